//! The helper attributes: `#[service(...)]` on the trait and `#[rpc(...)]` on
//! its methods. Unknown keys and repeated keys are errors that list the keys
//! that are accepted.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitStr};

use crate::ctxt::Errors;

/// The name of the method attribute.
pub(crate) const RPC: &str = "rpc";

/// Options given to `#[service(...)]`.
#[derive(Default)]
pub(crate) struct ServiceAttrs {
    /// `namespace = "calc"`: wire names become `calc.<method>`.
    pub namespace: Option<LitStr>,
    /// `crate = "path"`: where the runtime crate is, if renamed.
    pub krate: Option<syn::Path>,
}

/// Options given to `#[rpc(...)]` on one method.
#[derive(Default)]
pub(crate) struct MethodAttrs {
    /// `name = "wire_name"`.
    pub name: Option<LitStr>,
}

/// Parses the arguments of `#[service(...)]`.
pub(crate) fn service_attrs(args: TokenStream, errors: &mut Errors) -> ServiceAttrs {
    let mut attrs = ServiceAttrs::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("namespace") {
            let lit = string_value(&meta, attrs.namespace.is_some())?;
            let value = lit.value();
            if value.is_empty()
                || value.contains(char::is_whitespace)
                || value.starts_with('.')
                || value.ends_with('.')
            {
                return Err(syn::Error::new(
                    lit.span(),
                    "the namespace must be a non-empty name without spaces or outer dots, like `namespace = \"calc\"`",
                ));
            }
            if value == "rpc" || value.starts_with("rpc.") {
                return Err(syn::Error::new(
                    lit.span(),
                    "the namespace `rpc` is reserved: JSON-RPC keeps names starting with `rpc.` for built-in methods; choose another namespace",
                ));
            }
            attrs.namespace = Some(lit);
            Ok(())
        } else if meta.path.is_ident("crate") {
            let lit = string_value(&meta, attrs.krate.is_some())?;
            let path = lit.parse().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    "expected the path of the runtime crate, like `crate = \"::rpc_core\"`",
                )
            })?;
            attrs.krate = Some(path);
            Ok(())
        } else {
            Err(meta.error(format_args!(
                "unknown #[service] option `{}`; expected `namespace = \"...\"` or `crate = \"...\"`",
                path_name(&meta.path)
            )))
        }
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push(e);
    }
    attrs
}

/// Parses every `#[rpc(...)]` among `attrs`; a method may have several.
pub(crate) fn method_attrs(attrs: &[Attribute], errors: &mut Errors) -> MethodAttrs {
    let mut out = MethodAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident(RPC)) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit = string_value(&meta, out.name.is_some())?;
                let value = lit.value();
                if value.is_empty() || value.contains(char::is_whitespace) {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the wire name must be non-empty and without spaces, like `name = \"getUser\"`",
                    ));
                }
                out.name = Some(lit);
                Ok(())
            } else {
                Err(meta.error(format_args!(
                    "unknown #[rpc] option `{}`; expected `name = \"...\"`",
                    path_name(&meta.path)
                )))
            }
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    out
}

/// Reads `key = "string"`, refusing a key given twice.
fn string_value(meta: &ParseNestedMeta<'_>, seen: bool) -> syn::Result<LitStr> {
    if seen {
        return Err(meta.error(format_args!(
            "`{}` is given more than once; keep one",
            path_name(&meta.path)
        )));
    }
    if !meta.input.peek(syn::Token![=]) {
        return Err(meta.error(format_args!(
            "expected a value: `{} = \"...\"`",
            path_name(&meta.path)
        )));
    }
    let value: syn::Expr = meta.value()?.parse()?;
    match value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Ok(s),
        other => Err(syn::Error::new_spanned(
            other,
            format_args!(
                "expected a string, like `{} = \"...\"`",
                path_name(&meta.path)
            ),
        )),
    }
}

fn path_name(path: &syn::Path) -> String {
    quote::ToTokens::to_token_stream(path)
        .to_string()
        .replace(' ', "")
}

/// Only the `cfg` attributes of a method or trait.
pub(crate) fn cfg_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg"))
}

/// The span to use for generated names tied to no user token.
pub(crate) fn internal_span() -> Span {
    Span::mixed_site()
}
