//! The dispatcher: `FooServer<S>`, implementing `Service` for any `S: Foo`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::ast::{Output, Service};
use crate::attr::{cfg_attrs, internal_span};

use super::{doc_string, respan};

/// A `SchemaFn` for `ty`: its `JsonSchema` schema if it has one, else `{}`.
fn schema_fn(ty: &syn::Type, krate: &syn::Path) -> TokenStream {
    let generator = Ident::new("__generator", internal_span());
    quote! {
        {
            fn __schema(#generator: &mut #krate::__private::SchemaGenerator) -> #krate::__private::Value {
                #[allow(unused_imports)]
                use #krate::__private::{HasSchema as _, NoSchema as _};
                (&&#krate::__private::SchemaOf::<#ty>::new()).rpc_schema(#generator)
            }
            __schema as #krate::__private::SchemaFn
        }
    }
}

/// Whether `ty` is an `Option`: such a parameter may be left out.
fn is_option(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// Whether a parameter of type `ty` takes text as it is: a REST path or
/// query argument for it is a string, not JSON (`/api/hello/123` is the
/// name `"123"`). Decided on the type's name, as written.
fn is_text(ty: &syn::Type) -> bool {
    let syn::Type::Path(path) = ty else {
        return matches!(ty, syn::Type::Reference(_));
    };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    match last.ident.to_string().as_str() {
        "String" | "str" | "char" | "PathBuf" | "Cow" => true,
        "Option" | "Box" => match &last.arguments {
            syn::PathArguments::AngleBracketed(args) => args
                .args
                .iter()
                .any(|a| matches!(a, syn::GenericArgument::Type(inner) if is_text(inner))),
            _ => false,
        },
        _ => false,
    }
}

pub(crate) fn expand(service: &Service<'_>, krate: &syn::Path) -> TokenStream {
    let trait_ident = &service.item.ident;
    let vis = &service.item.vis;
    let server = format_ident!("{}Server", trait_ident);
    let name = trait_ident.unraw().to_string();
    let cfgs: Vec<_> = cfg_attrs(&service.item.attrs).collect();
    // Internal names: mixed-site spans keep them apart from the user's.
    let imp = Ident::new("__RpcImpl", internal_span());
    let method_var = Ident::new("__method", internal_span());
    let params_var = Ident::new("__params", internal_span());
    let reader = Ident::new("__reader", internal_span());
    let svc = Ident::new("__service", internal_span());
    let list = Ident::new("__methods", internal_span());
    let struct_doc = format!(
        "Dispatcher for [`{trait_ident}`]: hand it to `rpc_core::Server::builder().service(..)`."
    );

    let infos = service.methods.iter().map(|method| {
        let cfgs = cfg_attrs(&method.item.attrs);
        let wire = &method.wire;
        let names = method.args.iter().map(|a| &a.name);
        let text = method.args.iter().map(|a| is_text(a.ty));
        let aliases = method.aliases.iter().map(|(a, _)| a);
        let read_only = method.read_only.is_some();
        let required = method.args.iter().map(|a| !is_option(a.ty));
        let deprecated = method
            .item
            .attrs
            .iter()
            .any(|a| a.path().is_ident("deprecated"));
        let docs = doc_string(&method.item.attrs);
        let param_schemas = method.args.iter().map(|a| schema_fn(a.ty, krate));
        let unit: syn::Type = syn::parse_quote!(());
        let result_schema = match (&method.output, &method.stream) {
            (_, Some(stream)) => schema_fn(stream.item, krate),
            (Output::Unit, None) => schema_fn(&unit, krate),
            (Output::Plain(ty), None) => schema_fn(ty, krate),
            (Output::Result { ok, .. }, None) => schema_fn(ok, krate),
        };
        let streaming = method.stream.is_some();
        let error_schema = match &method.output {
            Output::Result { err, .. } => {
                let f = schema_fn(err, krate);
                quote!(::core::option::Option::Some(#f))
            }
            _ => quote!(::core::option::Option::None),
        };
        quote! {
            #(#cfgs)*
            #list.push(#krate::__private::MethodInfo {
                name: #wire,
                params: &[#(#names),*],
                text_params: &[#(#text),*],
                aliases: &[#(#aliases),*],
                read_only: #read_only,
                required: &[#(#required),*],
                param_schemas: {
                    const __SCHEMAS: &[#krate::__private::SchemaFn] = &[#(#param_schemas),*];
                    __SCHEMAS
                },
                result_schema: #result_schema,
                error_schema: #error_schema,
                deprecated: #deprecated,
                streaming: #streaming,
                docs: #docs,
            });
        }
    });

    let arms = service.methods.iter().map(|method| {
        let cfgs = cfg_attrs(&method.item.attrs);
        let wire = &method.wire;
        let ident = method.ident;
        let names = method.args.iter().map(|a| &a.name);
        // Spanned at the argument's type, so a type that cannot be
        // deserialized is reported there rather than at the attribute.
        let decode = method.args.iter().enumerate().map(|(index, a)| {
            let (ident, ty) = (a.ident, a.ty);
            quote_spanned!(ty.span()=> let #ident: #ty = #reader.arg(#index)?;)
        });
        let args = method.args.iter().map(|a| a.ident);
        let call = quote!(<#imp as #trait_ident>::#ident(&*#svc, #(#args),*).await);
        // As with arguments: a result that cannot be serialized is reported
        // at its type. The value's name carries that span too, since rustc
        // points at the argument that fails a bound.
        // A streaming method's value is handed over by value, its stream to
        // be sent item by item; any other is serialized.
        let reply_of = |value: &Ident, ty: &syn::Type| {
            let krate = respan(krate, ty.span());
            if method.stream.is_some() {
                quote_spanned!(ty.span()=> #krate::__private::open_stream(#value))
            } else {
                quote_spanned!(ty.span()=> #krate::__private::encode_reply(&#value))
            }
        };
        let encode = match &method.output {
            Output::Unit => quote!(#krate::__private::encode_reply(&#call)),
            Output::Plain(ty) => {
                let value = Ident::new("__value", ty.span());
                let reply = reply_of(&value, ty);
                quote!({ let #value = #call; #reply })
            }
            Output::Result { ok, err } => {
                let (ok_value, err_value) = (
                    Ident::new("__value", ok.span()),
                    Ident::new("__error", err.span()),
                );
                let err_krate = respan(krate, err.span());
                let reply = reply_of(&ok_value, ok);
                // The message is the error's `Display` text when it has one,
                // picked at compile time (see `rpc_core::__private::ErrorText`).
                let app_error = quote_spanned! {err.span()=>
                    {
                        #[allow(unused_imports)]
                        use #err_krate::__private::{DisplayText as _, NoText as _};
                        let __text = (&&#err_krate::__private::ErrorText(&#err_value)).rpc_text();
                        #err_krate::__private::encode_app_error_with(&#err_value, __text)
                    }
                };
                quote! {
                    match #call {
                        ::core::result::Result::Ok(#ok_value) => #reply,
                        ::core::result::Result::Err(#err_value) => #app_error,
                    }
                }
            }
        };
        quote! {
            #(#cfgs)*
            #wire => {
                let mut #reader = #krate::__private::ParamReader::new(#params_var, &[#(#names),*])?;
                #(#decode)*
                let #svc = ::core::clone::Clone::clone(&self.service);
                ::core::result::Result::Ok(::std::boxed::Box::pin(async move { #encode }))
            }
        }
    });

    quote! {
        #(#cfgs)*
        #[doc = #struct_doc]
        #vis struct #server<#imp> {
            service: ::std::sync::Arc<#imp>,
        }

        #(#cfgs)*
        impl<#imp> #server<#imp> {
            /// Serves calls with `service`.
            #vis fn new(service: #imp) -> Self {
                Self { service: ::std::sync::Arc::new(service) }
            }

            /// Serves calls with a service that is shared elsewhere too.
            #vis fn from_arc(service: ::std::sync::Arc<#imp>) -> Self {
                Self { service }
            }
        }

        #(#cfgs)*
        #[allow(deprecated)]
        impl<#imp: #trait_ident> #krate::Service for #server<#imp> {
            fn name(&self) -> &'static str {
                #name
            }

            fn methods(&self) -> ::std::vec::Vec<#krate::__private::MethodInfo> {
                let mut #list = ::std::vec::Vec::new();
                #(#infos)*
                #list
            }

            fn call(
                &self,
                #method_var: &str,
                #params_var: ::core::option::Option<&#krate::__private::RawValue>,
            ) -> ::core::result::Result<#krate::__private::HandlerFuture, #krate::ErrorObject> {
                match #method_var {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#krate::__private::method_not_found(#method_var)),
                }
            }
        }
    }
}
