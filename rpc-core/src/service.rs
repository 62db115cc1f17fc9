//! The contract between the server and a dispatcher.
//!
//! `#[service]` generates, for a trait `Foo`, a `FooServer<S>` that implements
//! [`Service`]: it lists the methods it offers and turns a method name plus raw
//! params into a future producing the JSON result. The server knows nothing
//! else about a service, so several unrelated services can share one port.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::message::{ErrorObject, code};

/// What a handler produces: the result as JSON text, or an error object.
pub type Reply = Result<Box<RawValue>, ErrorObject>;

/// The future of one call. Boxed once per call, at the boundary between the
/// server and a type-erased service; the user's own methods are not boxed.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// Writes the JSON Schema of one type with a generator, which collects the
/// definitions it refers to.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> serde_json::Value;

/// The schema of `T`: from its `JsonSchema` impl if it has one, else empty
/// (`{}`), chosen at compile time (autoref specialization): call
/// `(&&SchemaOf::<T>::new()).rpc_schema(generator)` with [`HasSchema`] and
/// [`NoSchema`] in scope. A type without `JsonSchema` is never an error.
#[doc(hidden)]
pub struct SchemaOf<T: ?Sized>(std::marker::PhantomData<fn() -> std::marker::PhantomData<T>>);

impl<T: ?Sized> SchemaOf<T> {
    /// The marker.
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T: ?Sized> Default for SchemaOf<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Picked when the type implements `JsonSchema`.
#[doc(hidden)]
pub trait HasSchema {
    fn rpc_schema(&self, generator: &mut schemars::SchemaGenerator) -> serde_json::Value;
}

impl<T: schemars::JsonSchema + ?Sized> HasSchema for &SchemaOf<T> {
    fn rpc_schema(&self, generator: &mut schemars::SchemaGenerator) -> serde_json::Value {
        generator.subschema_for::<T>().to_value()
    }
}

/// Picked otherwise.
#[doc(hidden)]
pub trait NoSchema {
    fn rpc_schema(&self, generator: &mut schemars::SchemaGenerator) -> serde_json::Value;
}

impl<T: ?Sized> NoSchema for SchemaOf<T> {
    fn rpc_schema(&self, _: &mut schemars::SchemaGenerator) -> serde_json::Value {
        serde_json::Value::Object(serde_json::Map::new())
    }
}

/// Describes one method a service offers.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    /// The name on the wire, namespace included (`calc.add`).
    pub name: &'static str,
    /// Parameter names, in positional order.
    pub params: &'static [&'static str],
    /// For each parameter, whether it takes text as it is (a `String`): a
    /// REST path or query argument for it is not read as JSON.
    pub text_params: &'static [bool],
    /// Other wire names of the method (`#[rpc(alias = "...")]`).
    pub aliases: &'static [&'static str],
    /// Safe to call by `GET` (`#[rpc(read_only)]`): it changes nothing.
    pub read_only: bool,
    /// For each parameter, whether it must be given (its type is not an
    /// `Option`).
    pub required: &'static [bool],
    /// For each parameter, its JSON Schema (empty without `JsonSchema`).
    pub param_schemas: &'static [SchemaFn],
    /// The JSON Schema of the result.
    pub result_schema: SchemaFn,
    /// The JSON Schema of the application error, for `-> Result<T, E>`.
    pub error_schema: Option<SchemaFn>,
    /// Whether the method is `#[deprecated]`.
    pub deprecated: bool,
    /// Whether the method returns a [`Stream`](crate::Stream): it must be
    /// called on its own, over a connection (not in a batch, not over
    /// plain HTTP), and `result_schema` is its items'.
    pub streaming: bool,
    /// The method's doc comment.
    pub docs: &'static str,
}

/// A dispatcher the [`Server`](crate::Server) can route calls to.
///
/// Implemented by the `FooServer<S>` types that `#[service]` generates;
/// hand them to [`ServerBuilder::service`](crate::ServerBuilder::service).
/// The types its methods use ([`MethodInfo`], [`HandlerFuture`]) are the
/// generated code's, kept out of the public API: implementing the trait by
/// hand works, but may break in any release.
pub trait Service: Send + Sync + 'static {
    /// The service's name, used in error messages and introspection.
    fn name(&self) -> &'static str;

    /// Every method this service answers, by wire name.
    fn methods(&self) -> Vec<MethodInfo>;

    /// Decodes the params of `method` and returns the future that runs it.
    ///
    /// Param errors are returned at once (before any handler runs), as an
    /// [`ErrorObject`] with code [`INVALID_PARAMS`](code::INVALID_PARAMS).
    fn call(&self, method: &str, params: Option<&RawValue>) -> Result<HandlerFuture, ErrorObject>;
}

/// Serializes a method's return value into a [`Reply`].
pub fn encode_reply<T: Serialize + ?Sized>(value: &T) -> Reply {
    let mut json = Vec::new();
    crate::json::write(&mut json, value).map_err(result_not_serializable)?;
    // Valid UTF-8 JSON by construction; both checks are cheap next to the
    // escaping they replace.
    let text = String::from_utf8(json)
        .map_err(|e| result_not_serializable(serde::ser::Error::custom(e)))?;
    RawValue::from_string(text).map_err(result_not_serializable)
}

/// Turns a method's error value into an application error object: code
/// [`APPLICATION_ERROR`](code::APPLICATION_ERROR), the serialized value in
/// `data`, and a message derived from the value (a string value itself, or
/// the variant name of an enum).
///
/// Generated dispatchers use the error's `Display` text as the message when
/// the type has one (`"division by zero"` rather than `"DivisionByZero"`).
pub fn encode_app_error<E: Serialize + ?Sized>(error: &E) -> Reply {
    encode_app_error_with(error, None)
}

/// [`encode_app_error`] with the message given, when the caller has one.
#[doc(hidden)]
pub fn encode_app_error_with<E: Serialize + ?Sized>(error: &E, message: Option<String>) -> Reply {
    let data = serde_json::to_value(error).map_err(result_not_serializable)?;
    let message = message.unwrap_or_else(|| match &data {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) if map.len() == 1 => {
            map.keys().next().cloned().unwrap_or_default()
        }
        _ => "application error".to_owned(),
    });
    Err(ErrorObject::new(code::APPLICATION_ERROR, message).with_data(data))
}

/// The `Display` text of an error if its type has one, `None` otherwise,
/// chosen at compile time (autoref specialization): call
/// `(&&ErrorText(&e)).rpc_text()` with [`DisplayText`] and [`NoText`] in scope.
#[doc(hidden)]
pub struct ErrorText<'a, T: ?Sized>(pub &'a T);

/// Picked when the error type implements `Display`.
#[doc(hidden)]
pub trait DisplayText {
    fn rpc_text(&self) -> Option<String>;
}

impl<T: std::fmt::Display + ?Sized> DisplayText for &ErrorText<'_, T> {
    fn rpc_text(&self) -> Option<String> {
        Some(self.0.to_string())
    }
}

/// Picked otherwise.
#[doc(hidden)]
pub trait NoText {
    fn rpc_text(&self) -> Option<String>;
}

impl<T: ?Sized> NoText for ErrorText<'_, T> {
    fn rpc_text(&self) -> Option<String> {
        None
    }
}

#[cold]
fn result_not_serializable(e: serde_json::Error) -> ErrorObject {
    ErrorObject::internal(format_args!(
        "the method's result could not be serialized: {e}"
    ))
}

/// The error for a method no service offers.
#[cold]
pub fn method_not_found(method: &str) -> ErrorObject {
    ErrorObject::new(
        code::METHOD_NOT_FOUND,
        format!(
            "method `{}` not found; call `rpc.discover` for the list of methods",
            crate::message::quote(method)
        ),
    )
}

/// Params of a call without arguments: serialized as `[]`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct NoParams;

impl Serialize for NoParams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        s.serialize_seq(Some(0))?.end()
    }
}
