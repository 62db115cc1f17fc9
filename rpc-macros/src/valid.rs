//! Semantic checks: everything the runtime cannot support is rejected here,
//! at the user's span, with a message that says what to write instead.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::visit::Visit;
use syn::{GenericParam, ReturnType, TraitItem, Type};

use crate::ast::{Method, Service};
use crate::attr::{RPC, cfg_attrs};
use crate::ctxt::Errors;

/// Names of the generated client's own methods; a trait method of the same
/// name would clash with them.
const CLIENT_METHODS: &[&str] = &[
    "connect",
    "discover",
    "new",
    "inner",
    "with_timeout",
    "batch",
];

pub(crate) fn check(service: &Service<'_>, errors: &mut Errors) {
    let item = service.item;
    if !item.generics.params.is_empty() {
        errors.spanned(
            &item.generics,
            "#[service] traits cannot be generic: the wire interface must be one concrete set of methods; use concrete types",
        );
    }
    if let Some(clause) = &item.generics.where_clause {
        errors.spanned(
            clause,
            "#[service] traits cannot have a `where` clause; write bounds on `Self` as supertraits: `trait Name: Bound`",
        );
    }
    if let Some(auto) = &item.auto_token {
        errors.spanned(
            auto,
            "#[service] cannot be used on an auto trait: remove `auto`",
        );
    }
    for attr in item.attrs.iter().filter(|a| a.path().is_ident(RPC)) {
        errors.spanned(
            attr,
            "#[rpc(...)] goes on a method; options for the whole trait go in #[service(...)]",
        );
    }
    for trait_item in &item.items {
        match trait_item {
            TraitItem::Fn(_) => {}
            TraitItem::Type(t) => errors.spanned(
                without_attrs(t.type_token, t.semi_token),
                "associated types are not supported in a #[service] trait; use a concrete type in the method signatures",
            ),
            TraitItem::Const(c) => errors.spanned(
                without_attrs(c.const_token, c.semi_token),
                "associated constants are not supported in a #[service] trait; define the constant outside the trait",
            ),
            TraitItem::Macro(m) => errors.spanned(
                &m.mac,
                "a #[service] trait may contain only `async fn` methods, not macro invocations; write the methods out",
            ),
            other => errors.spanned(other, "a #[service] trait may contain only `async fn` methods"),
        }
    }
    for (index, method) in service.methods.iter().enumerate() {
        check_method(method, errors);
        let earlier = &service.methods[..index];
        for (position, (name, span)) in method.names().enumerate() {
            let clash = earlier
                .iter()
                .filter(|m| may_coexist(m, method))
                .find(|m| m.names().any(|(n, _)| n == name))
                .map(|m| m.ident.to_string())
                .or_else(|| {
                    // The method's own names must differ too.
                    method
                        .names()
                        .take(position)
                        .any(|(n, _)| n == name)
                        .then(|| method.ident.to_string())
                });
            if let Some(first) = clash {
                errors.push(syn::Error::new(
                    span,
                    format_args!(
                        "the wire name `{name}` is already used by method `{first}`; give one of them another name with #[rpc(name = \"...\")] or a different alias"
                    ),
                ));
            }
        }
    }
}

/// Whether two methods can be compiled in together: methods under different
/// `#[cfg]`s are taken to be alternatives (one per platform, say) and may
/// share a name.
fn may_coexist(a: &Method<'_>, b: &Method<'_>) -> bool {
    let cfgs = |m: &Method<'_>| -> Vec<String> {
        cfg_attrs(&m.item.attrs)
            .map(|a| a.to_token_stream().to_string())
            .collect()
    };
    let (a, b) = (cfgs(a), cfgs(b));
    a.is_empty() || b.is_empty() || a == b
}

/// The span from `first` to `last`, leaving out the attributes before them.
fn without_attrs(first: impl ToTokens, last: impl ToTokens) -> TokenStream {
    let mut tokens = first.into_token_stream();
    last.to_tokens(&mut tokens);
    tokens
}

fn check_method(method: &Method<'_>, errors: &mut Errors) {
    let sig = &method.item.sig;
    if let Some(body) = &method.item.default {
        errors.spanned(
            body,
            "default method bodies are not supported in a #[service] trait; remove the body and implement the method in the `impl`",
        );
    }
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format_args!(
                "RPC methods must be async: write `async fn {}(&self, ...)`",
                sig.ident
            ),
        );
    }
    if let Some(c) = &sig.constness {
        errors.spanned(c, "RPC methods cannot be `const`: remove it");
    }
    if let Some(u) = &sig.unsafety {
        errors.spanned(
            u,
            "RPC methods cannot be `unsafe`: a remote caller cannot uphold a safety contract; remove it",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "RPC methods cannot have an `extern` ABI: remove it");
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(
            v,
            "RPC methods cannot be variadic: take a `Vec<T>` argument instead",
        );
    }
    check_generics_and_receiver(method, errors);
    check_call_options(method, errors);
    let name = sig.ident.unraw().to_string();
    if CLIENT_METHODS.contains(&name.as_str()) {
        errors.spanned(
            &sig.ident,
            format_args!(
                "a method called `{name}` would clash with the generated client's own `{name}`; rename the Rust method (keep the wire name with #[rpc(name = \"{name}\")])"
            ),
        );
    }
    for (alias, span) in &method.aliases {
        if alias.starts_with("rpc.") {
            errors.push(syn::Error::new(
                *span,
                format_args!(
                    "the alias `{alias}` starts with `rpc.`, which JSON-RPC reserves for built-in methods; choose another"
                ),
            ));
        }
    }
    if method.wire.starts_with("rpc.") {
        errors.push(syn::Error::new(
            method.wire_span,
            format_args!(
                "the wire name `{}` starts with `rpc.`, which JSON-RPC reserves for built-in methods; choose another name",
                method.wire
            ),
        ));
    }
    for arg in &method.args {
        check_type(arg.ty, "argument", errors);
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        check_type(ty, "return", errors);
        check_result_alias(ty, errors);
    }
}

/// Rejects a return type spelled as a `Result` alias with one parameter
/// (`type Result<T> = std::result::Result<T, MyError>`, `io::Result<T>`):
/// the macro sees types, not what an alias stands for, so it would take
/// the whole `Result` for a plain value and an `Err` would arrive as a
/// successful result.
fn check_result_alias(ty: &syn::Type, errors: &mut Errors) {
    let syn::Type::Path(path) = ty else { return };
    let Some(last) = path.path.segments.last() else {
        return;
    };
    if last.ident != "Result" {
        return;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return;
    };
    let types = args
        .args
        .iter()
        .filter(|a| matches!(a, syn::GenericArgument::Type(_)))
        .count();
    if types == 1 {
        errors.spanned(
            ty,
            "a `Result` with one type parameter is an alias the macro cannot see through, so an `Err` would travel as a successful result; spell it out as `Result<T, E>` (for example `std::result::Result<u32, MyError>`)",
        );
    }
}

/// Rejects generic methods and any receiver but `&self`.
fn check_generics_and_receiver(method: &Method<'_>, errors: &mut Errors) {
    let sig = &method.item.sig;
    if let Some(clause) = &sig.generics.where_clause {
        errors.spanned(
            clause,
            "RPC methods cannot have a `where` clause: their types must be concrete; remove it",
        );
    }
    let params = &sig.generics.params;
    let only_lifetimes = params
        .iter()
        .all(|p| matches!(p, GenericParam::Lifetime(_)));
    // `&'a self`: right but for the lifetime.
    let receiver_lifetime = method
        .receiver
        .filter(|r| r.mutability.is_none() && r.colon_token.is_none())
        .and_then(|r| r.reference.as_ref())
        .and_then(|(_, lifetime)| lifetime.as_ref());
    match method.receiver {
        // `fn get<'a>(&'a self)`: one mistake, reported once over both parts.
        Some(r) if receiver_lifetime.is_some() && !params.is_empty() && only_lifetimes => {
            let mut tokens = sig.generics.to_token_stream();
            r.to_tokens(&mut tokens);
            errors.spanned(
                tokens,
                format_args!(
                    "RPC methods take plain `&self`, without lifetimes: write `async fn {}(&self, ...)`",
                    sig.ident
                ),
            );
            return;
        }
        Some(_) if receiver_lifetime.is_some() => errors.spanned(
            receiver_lifetime,
            "RPC methods take plain `&self`, without a lifetime: remove it",
        ),
        Some(r) => {
            let by_shared_ref = matches!(&r.reference, Some((_, None)))
                && r.mutability.is_none()
                && r.colon_token.is_none();
            if !by_shared_ref {
                errors.spanned(
                    r,
                    "RPC methods must take `&self`: the server calls one shared instance from many tasks at once (use a Mutex or atomics inside for state)",
                );
            }
        }
        None => errors.spanned(
            &sig.ident,
            format_args!(
                "RPC methods need `&self` as their first parameter: `async fn {}(&self, ...)`",
                sig.ident
            ),
        ),
    }
    if !params.is_empty() {
        let message = if only_lifetimes {
            "RPC methods cannot have lifetime parameters: arguments arrive owned, so there is nothing to borrow; remove them"
        } else {
            "RPC methods cannot be generic: the server must know each argument's concrete type; use concrete types"
        };
        errors.spanned(&sig.generics, message);
    }
}

/// Rejects borrowed and opaque types: arguments are decoded into owned values
/// and results are sent after the call returns.
fn check_type(ty: &Type, role: &str, errors: &mut Errors) {
    struct Finder<'e, 'r> {
        errors: &'e mut Errors,
        role: &'r str,
    }
    impl<'ast> Visit<'ast> for Finder<'_, '_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            self.errors.spanned(
                r,
                format_args!(
                    "{} types cannot be references: values travel over the network and arrive owned; use an owned type such as `String` or `Vec<T>`",
                    self.role
                ),
            );
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            self.errors.spanned(
                l,
                format_args!("{} types cannot have lifetimes: use owned types", self.role),
            );
        }
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.errors.spanned(
                t,
                format_args!(
                    "`impl Trait` is not supported in {} types: the value must be (de)serialized as one concrete type; name it",
                    self.role
                ),
            );
        }
        fn visit_type_trait_object(&mut self, t: &'ast syn::TypeTraitObject) {
            self.errors.spanned(
                t,
                format_args!(
                    "trait objects are not supported in {} types: use a concrete type",
                    self.role
                ),
            );
        }
        fn visit_type_never(&mut self, t: &'ast syn::TypeNever) {
            self.errors.spanned(
                t,
                format_args!(
                    "`!` is not supported in {} types: a call must produce a value to send; use `()`",
                    self.role
                ),
            );
        }
        fn visit_type_path(&mut self, t: &'ast syn::TypePath) {
            if t.qself.is_none() && t.path.segments.first().is_some_and(|s| s.ident == "Self") {
                self.errors.spanned(
                    t,
                    format_args!(
                        "`Self` cannot appear in {} types: the client and the server each have their own `Self`; name the concrete type",
                        self.role
                    ),
                );
            } else {
                syn::visit::visit_type_path(self, t);
            }
        }
        fn visit_type_ptr(&mut self, t: &'ast syn::TypePtr) {
            self.errors.spanned(
                t,
                format_args!(
                    "raw pointers cannot travel over the network: use an owned {} type",
                    self.role
                ),
            );
        }
    }
    Finder { errors, role }.visit_type(ty);
}

/// `oneway` excludes a result, a timeout and retries: nothing comes back.
fn check_call_options(method: &Method<'_>, errors: &mut Errors) {
    let Some(oneway) = method.oneway else {
        return;
    };
    if let ReturnType::Type(_, ty) = &method.item.sig.output {
        if !matches!(method.output, crate::ast::Output::Unit) {
            errors.spanned(
                ty,
                "a #[rpc(oneway)] method sends a notification and gets no answer, so it cannot return a value: remove the return type",
            );
        }
    }
    if let Some((_, lit)) = &method.timeout {
        errors.spanned(
            lit,
            "a #[rpc(oneway)] method waits for no response, so it has no timeout: remove `timeout`",
        );
    }
    if let Some(idempotent) = method.idempotent {
        errors.push(syn::Error::new(
            idempotent,
            "a #[rpc(oneway)] call is never retried (no answer says whether it failed): remove `idempotent`",
        ));
    }
    let _ = oneway;
}
