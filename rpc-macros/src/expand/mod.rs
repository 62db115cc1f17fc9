//! From the checked model to tokens: the rewritten trait, the client and the
//! server. On any error the user's trait is emitted unchanged (minus our
//! helper attributes) beside the errors, so one mistake does not turn into a
//! cascade of "cannot find trait" errors.

mod client;
mod server;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Attribute, ItemTrait, ReturnType, TraitItem, parse_quote};

use crate::ast::{Method, Output, Service};
use crate::attr::{self, RPC};
use crate::ctxt::Errors;
use crate::valid;

pub(crate) fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item: ItemTrait = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.spanned(
                &input,
                "#[service] goes on a trait: `#[service] trait Name { async fn method(&self, ...) -> T; }`",
            );
            let mut out = input;
            out.extend(errors.into_compile_errors());
            return out;
        }
    };
    let attrs = attr::service_attrs(args, &mut errors);
    let model = Service::from_syn(&item, attrs, &mut errors);
    valid::check(&model, &mut errors);
    if let Err(e) = std::mem::take(&mut errors).finish() {
        let mut out = strip_helper_attrs(item.clone()).into_token_stream();
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

/// The trait as the user wrote it, without `#[rpc]` attributes (which would
/// otherwise be reported as unknown).
fn strip_helper_attrs(mut item: ItemTrait) -> ItemTrait {
    for trait_item in &mut item.items {
        if let TraitItem::Fn(f) = trait_item {
            f.attrs.retain(|a| !a.path().is_ident(RPC));
        }
    }
    item
}

/// The trait with `Send + Sync + 'static` added and each `async fn` turned
/// into a method returning `impl Future + Send`.
fn rewrite_trait(service: &Service<'_>) -> TokenStream {
    let mut item = strip_helper_attrs(service.item.clone());
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
    method.item.attrs.iter().filter(|a| {
        let p = a.path();
        p.is_ident("doc") || p.is_ident("cfg") || p.is_ident("deprecated")
    })
}

/// Only the `cfg` attributes of a method or trait.
fn cfg_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg"))
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

/// The success type of a method as tokens (`()` for no return value).
fn ok_type(output: &Output<'_>) -> TokenStream {
    match output {
        Output::Unit => quote!(()),
        Output::Plain(ty) => ty.to_token_stream(),
        Output::Result { ok, .. } => ok.to_token_stream(),
    }
}
