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
    /// `timeout = "2s"`: the method's default time budget, in milliseconds,
    /// with the literal (for errors).
    pub timeout: Option<(u64, LitStr)>,
    /// `oneway`: sent as a notification, no response awaited.
    pub oneway: Option<Span>,
    /// `idempotent`: may be retried once on a fresh connection.
    pub idempotent: Option<Span>,
    /// `alias = "..."`, any number of times: other wire names of the method.
    pub aliases: Vec<LitStr>,
    /// `read_only`: safe to call by `GET` (REST routes).
    pub read_only: Option<Span>,
}

/// Parses a duration such as `"2s"`, `"500ms"`, `"1.5s"` or `"1m"` into
/// whole milliseconds (at least 1).
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return None;
    };
    let value: f64 = number.trim().parse().ok()?;
    let ms = (value * unit_ms).ceil();
    (value.is_finite() && value > 0.0 && ms <= u64::MAX as f64).then_some(ms as u64)
}

/// Reads a bare flag such as `oneway`, refusing a value or a repeat.
fn flag(meta: &ParseNestedMeta<'_>, seen: bool) -> syn::Result<Span> {
    let name = path_name(&meta.path);
    if seen {
        return Err(meta.error(format_args!("`{name}` is given more than once; keep one")));
    }
    if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        return Err(meta.error(format_args!(
            "`{name}` takes no value: write `#[rpc({name})]`"
        )));
    }
    Ok(syn::spanned::Spanned::span(&meta.path))
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
            } else if meta.path.is_ident("timeout") {
                let lit = string_value(&meta, out.timeout.is_some())?;
                let Some(ms) = parse_duration(&lit.value()) else {
                    return Err(syn::Error::new(
                        lit.span(),
                        "expected a positive duration with a unit, like `timeout = \"2s\"` or `timeout = \"500ms\"` (units: ms, s, m, h)",
                    ));
                };
                out.timeout = Some((ms, lit));
                Ok(())
            } else if meta.path.is_ident("oneway") {
                out.oneway = Some(flag(&meta, out.oneway.is_some())?);
                Ok(())
            } else if meta.path.is_ident("idempotent") {
                out.idempotent = Some(flag(&meta, out.idempotent.is_some())?);
                Ok(())
            } else if meta.path.is_ident("read_only") {
                out.read_only = Some(flag(&meta, out.read_only.is_some())?);
                Ok(())
            } else if meta.path.is_ident("alias") {
                // Repeatable: each `alias = "..."` adds one.
                let lit = string_value(&meta, false)?;
                let value = lit.value();
                if value.is_empty() || value.contains(char::is_whitespace) || value.contains('/') {
                    return Err(syn::Error::new(
                        lit.span(),
                        "an alias must be non-empty, without spaces or `/`, like `alias = \"soma\"`",
                    ));
                }
                out.aliases.push(lit);
                Ok(())
            } else {
                Err(meta.error(format_args!(
                    "unknown #[rpc] option `{}`; expected `name = \"...\"`, `alias = \"...\"`, `timeout = \"...\"`, `oneway`, `idempotent` or `read_only`",
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

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_need_a_unit_and_a_positive_value() {
        assert_eq!(parse_duration("2s"), Some(2_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("1.5s"), Some(1_500));
        assert_eq!(parse_duration("1m"), Some(60_000));
        assert_eq!(parse_duration("0.0001s"), Some(1));
        for bad in ["2", "0s", "-1s", "fast", "s", "1.5.2s", "infs"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
