//! A typed model of the annotated trait.
//!
//! The model borrows the user's syntax tree, so every generated token and
//! every error can point back at what the user wrote.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, Receiver, ReturnType, TraitItem,
    TraitItemFn, Type,
};

use crate::attr::{self, MethodAttrs, ServiceAttrs};
use crate::ctxt::Errors;

/// The trait and its methods.
pub(crate) struct Service<'a> {
    pub item: &'a ItemTrait,
    pub attrs: ServiceAttrs,
    pub methods: Vec<Method<'a>>,
}

/// One `async fn` of the trait.
pub(crate) struct Method<'a> {
    pub item: &'a TraitItemFn,
    pub ident: &'a Ident,
    /// The name on the wire, namespace included.
    pub wire: String,
    /// Where the wire name comes from: the `name = "..."` literal or the ident.
    pub wire_span: Span,
    pub receiver: Option<&'a Receiver>,
    pub args: Vec<Arg<'a>>,
    pub output: Output<'a>,
    /// For a streaming method (its value is a `Stream<T>` or
    /// `Stream<T, E>`): the items' type and the error that may end it.
    pub stream: Option<StreamOutput<'a>>,
    /// `#[rpc(timeout = "...")]`: milliseconds, and the literal.
    pub timeout: Option<(u64, syn::LitStr)>,
    /// `#[rpc(oneway)]`, where it was written.
    pub oneway: Option<Span>,
    /// `#[rpc(idempotent)]`, where it was written.
    pub idempotent: Option<Span>,
    /// `#[rpc(alias = "...")]`: other wire names (namespace included), with
    /// where each was written.
    pub aliases: Vec<(String, Span)>,
    /// `#[rpc(read_only)]`, where it was written.
    pub read_only: Option<Span>,
}

/// A named argument.
pub(crate) struct Arg<'a> {
    pub ident: &'a Ident,
    /// The name on the wire: the ident without any `r#`.
    pub name: String,
    pub ty: &'a Type,
}

/// The `Stream<T, E>` a streaming method returns.
pub(crate) struct StreamOutput<'a> {
    /// `T`.
    pub item: &'a Type,
    /// `E`, when written.
    pub error: Option<&'a Type>,
}

impl<'a> StreamOutput<'a> {
    /// `Some` if `ty` is a `Stream<T>` or `Stream<T, E>` (any path ending
    /// in `Stream`, such as `rpc_core::Stream`).
    fn from_type(ty: &'a Type) -> Option<Self> {
        let Type::Path(p) = ty else {
            return None;
        };
        let last = p.path.segments.last()?;
        if p.qself.is_some() || last.ident != "Stream" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        let types: Vec<&Type> = args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect();
        match types[..] {
            [item] => Some(Self { item, error: None }),
            [item, error] => Some(Self {
                item,
                error: Some(error),
            }),
            _ => None,
        }
    }
}

/// What a method returns.
pub(crate) enum Output<'a> {
    /// Nothing: `()` on the wire (`null`).
    Unit,
    /// A plain value.
    Plain(&'a Type),
    /// `Result<T, E>`: `E` travels as an application error.
    Result { ok: &'a Type, err: &'a Type },
}

impl<'a> Service<'a> {
    /// Builds the model; shape errors (unnamed arguments) are recorded, and
    /// the rest of the model is still built so later stages can report more.
    pub(crate) fn from_syn(item: &'a ItemTrait, attrs: ServiceAttrs, errors: &mut Errors) -> Self {
        let namespace = attrs.namespace.as_ref().map(|ns| ns.value());
        let methods = item
            .items
            .iter()
            .filter_map(|item| match item {
                TraitItem::Fn(f) => Some(Method::from_syn(f, namespace.as_deref(), errors)),
                _ => None,
            })
            .collect();
        Self {
            item,
            attrs,
            methods,
        }
    }
}

impl<'a> Method<'a> {
    fn from_syn(item: &'a TraitItemFn, namespace: Option<&str>, errors: &mut Errors) -> Self {
        let MethodAttrs {
            name,
            timeout,
            oneway,
            idempotent,
            aliases,
            read_only,
        } = attr::method_attrs(&item.attrs, errors);
        let aliases = aliases
            .iter()
            .map(|lit| {
                let name = match namespace {
                    Some(ns) => format!("{ns}.{}", lit.value()),
                    None => lit.value(),
                };
                (name, lit.span())
            })
            .collect();
        let (base, wire_span) = match &name {
            Some(lit) => (lit.value(), lit.span()),
            None => (item.sig.ident.unraw().to_string(), item.sig.ident.span()),
        };
        let wire = match namespace {
            Some(ns) => format!("{ns}.{base}"),
            None => base,
        };
        let mut receiver = None;
        let mut args = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(typed) => match plain_name(&typed.pat) {
                    Some(ident) => args.push(Arg {
                        ident,
                        name: ident.unraw().to_string(),
                        ty: &typed.ty,
                    }),
                    None => errors.spanned(
                        &typed.pat,
                        "an RPC argument needs a plain name (it is the parameter's name on the wire): write `name: Type`",
                    ),
                },
            }
        }
        let output = Output::from_syn(&item.sig.output);
        let stream = match &output {
            Output::Plain(ty) => StreamOutput::from_type(ty),
            Output::Result { ok, .. } => StreamOutput::from_type(ok),
            Output::Unit => None,
        };
        Self {
            item,
            ident: &item.sig.ident,
            wire,
            wire_span,
            receiver,
            args,
            output,
            stream,
            timeout,
            oneway,
            idempotent,
            aliases,
            read_only,
        }
    }

    /// Every name the method answers to: its wire name, then its aliases.
    pub(crate) fn names(&self) -> impl Iterator<Item = (&str, Span)> {
        std::iter::once((self.wire.as_str(), self.wire_span))
            .chain(self.aliases.iter().map(|(n, s)| (n.as_str(), *s)))
    }
}

/// The name bound by `pat` if it is a plain `name` (not `mut name`, `_` or
/// a destructuring pattern).
pub(crate) fn plain_name(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => {
            Some(&p.ident)
        }
        _ => None,
    }
}

impl<'a> Output<'a> {
    fn from_syn(output: &'a ReturnType) -> Self {
        let ty = match output {
            ReturnType::Default => return Output::Unit,
            ReturnType::Type(_, ty) => &**ty,
        };
        if let Type::Tuple(t) = ty {
            if t.elems.is_empty() {
                return Output::Unit;
            }
        }
        if let Type::Path(p) = ty {
            if p.qself.is_none() {
                if let Some(last) = p.path.segments.last() {
                    if last.ident == "Result" {
                        if let PathArguments::AngleBracketed(args) = &last.arguments {
                            let types: Vec<&Type> = args
                                .args
                                .iter()
                                .filter_map(|a| match a {
                                    GenericArgument::Type(t) => Some(t),
                                    _ => None,
                                })
                                .collect();
                            if let [ok, err] = types[..] {
                                if args.args.len() == 2 {
                                    return Output::Result { ok, err };
                                }
                            }
                        }
                    }
                }
            }
        }
        Output::Plain(ty)
    }
}
