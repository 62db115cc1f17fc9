//! From the checked model to tokens: the rewritten trait, the client and the
//! server. On any error the user's trait is emitted unchanged (minus our
//! helper attributes) beside the errors, so one mistake does not turn into a
//! cascade of "cannot find trait" errors.

mod client;
mod server;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{Attribute, ItemTrait, ReturnType, TraitItem, parse_quote};

use crate::ast::{Method, Output, Service, plain_name};
use crate::attr::{self, RPC};
use crate::ctxt::Errors;
use crate::valid;

pub(crate) fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item: ItemTrait = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            errors.push(not_a_trait(&input).unwrap_or(e));
            let mut out = input;
            out.extend(errors.into_compile_errors());
            return out;
        }
    };
    let attrs = attr::service_attrs(args, &mut errors);
    let model = Service::from_syn(&item, attrs, &mut errors);
    valid::check(&model, &mut errors);
    if let Err(e) = std::mem::take(&mut errors).finish() {
        let mut out = fallback(item.clone()).into_token_stream();
        out.extend(e.to_compile_error());
        return out;
    }
    let krate: syn::Path = model
        .attrs
        .krate
        .clone()
        .unwrap_or_else(|| parse_quote!(::rpc_core));
    let mut out = rewrite_trait(&model);
    out.extend(client::expand(&model, &krate));
    out.extend(server::expand(&model, &krate));
    out
}

/// The error for an item that is not a trait, at its keyword; `None` if the
/// input does not parse as an item at all (then syn's own error is better).
fn not_a_trait(input: &TokenStream) -> Option<syn::Error> {
    const HOWTO: &str = "`#[service] trait Name { async fn method(&self, ...) -> T; }`";
    let item: syn::Item = syn::parse2(input.clone()).ok()?;
    let error = match &item {
        syn::Item::Trait(_) => return None,
        syn::Item::Impl(i) => syn::Error::new_spanned(
            i.impl_token,
            "#[service] goes on the trait definition, not on its `impl`; \
             implement the trait without the attribute",
        ),
        syn::Item::Struct(i) => keyword_error(i.struct_token, HOWTO),
        syn::Item::Enum(i) => keyword_error(i.enum_token, HOWTO),
        syn::Item::Fn(i) => keyword_error(i.sig.fn_token, HOWTO),
        syn::Item::Mod(i) => keyword_error(i.mod_token, HOWTO),
        syn::Item::TraitAlias(i) => keyword_error(i.trait_token, HOWTO),
        other => keyword_error(other, HOWTO),
    };
    Some(error)
}

fn keyword_error(keyword: impl ToTokens, howto: &str) -> syn::Error {
    syn::Error::new_spanned(keyword, format_args!("#[service] goes on a trait: {howto}"))
}

/// The trait as the user wrote it, beside the errors: without `#[rpc]`
/// attributes (which would be reported as unknown), and without what we
/// already reported that rustc would report a second time (`auto`, `const`
/// methods, C variadics, patterns in methods without a body).
fn fallback(mut item: ItemTrait) -> ItemTrait {
    item.auto_token = None;
    item.attrs.retain(|a| !a.path().is_ident(RPC));
    for trait_item in &mut item.items {
        strip_rpc_attrs(trait_item);
        if let TraitItem::Fn(f) = trait_item {
            f.sig.constness = None;
            f.sig.variadic = None;
            if f.default.is_none() {
                for input in &mut f.sig.inputs {
                    if let syn::FnArg::Typed(typed) = input {
                        if plain_name(&typed.pat).is_none() {
                            *typed.pat = parse_quote!(_);
                        }
                    }
                }
            }
        }
    }
    item
}

/// Removes our `#[rpc]` helper attributes from one trait item.
fn strip_rpc_attrs(item: &mut TraitItem) {
    let attrs = match item {
        TraitItem::Fn(f) => &mut f.attrs,
        TraitItem::Const(c) => &mut c.attrs,
        TraitItem::Type(t) => &mut t.attrs,
        TraitItem::Macro(m) => &mut m.attrs,
        _ => return,
    };
    attrs.retain(|a| !a.path().is_ident(RPC));
}

/// The trait with `Send + Sync + 'static` added and each `async fn` turned
/// into a method returning `impl Future + Send`.
fn rewrite_trait(service: &Service<'_>) -> TokenStream {
    let mut item = service.item.clone();
    item.items.iter_mut().for_each(strip_rpc_attrs);
    item.supertraits.push(parse_quote!(::core::marker::Send));
    item.supertraits.push(parse_quote!(::core::marker::Sync));
    item.supertraits.push(parse_quote!('static));
    if item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }
    for trait_item in &mut item.items {
        if let TraitItem::Fn(f) = trait_item {
            let output = match &f.sig.output {
                ReturnType::Default => quote!(()),
                ReturnType::Type(_, ty) => ty.to_token_stream(),
            };
            f.sig.asyncness = None;
            f.sig.output = parse_quote! {
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
            };
        }
    }
    item.into_token_stream()
}

/// Attributes of a method that carry over to generated items: docs, `cfg`
/// and `deprecated`.
fn carried_attrs<'a>(method: &'a Method<'_>) -> impl Iterator<Item = &'a Attribute> {
    // The user's `allow`s too: a lint they silenced on the trait method
    // (`clippy::too_many_arguments`, say) would otherwise fire again on the
    // generated methods, pointing at the attribute.
    method.item.attrs.iter().filter(|a| {
        let p = a.path();
        p.is_ident("doc") || p.is_ident("cfg") || p.is_ident("deprecated") || p.is_ident("allow")
    })
}

/// The doc comment of a method or trait, as one string.
fn doc_string(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').map(str::to_owned).unwrap_or(line))
        .collect();
    lines.join("\n")
}

/// `tokens` (a path) with every token at `span`, so an error about the
/// expression it starts is reported at `span` as a whole.
fn respan(tokens: impl ToTokens, span: Span) -> TokenStream {
    tokens
        .into_token_stream()
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

/// The success type of a method as tokens (`()` for no return value).
fn ok_type(output: &Output<'_>) -> TokenStream {
    match output {
        Output::Unit => quote!(()),
        Output::Plain(ty) => ty.to_token_stream(),
        Output::Result { ok, .. } => ok.to_token_stream(),
    }
}
