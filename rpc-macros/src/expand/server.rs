//! The dispatcher: `FooServer<S>`, implementing `Service` for any `S: Foo`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::ast::{Output, Service};
use crate::attr::internal_span;

use super::{cfg_attrs, doc_string};

pub(crate) fn expand(service: &Service<'_>, krate: &syn::Path) -> TokenStream {
    let trait_ident = &service.item.ident;
    let vis = &service.item.vis;
    let server = format_ident!("{}Server", trait_ident);
    let name = trait_ident.to_string();
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
        let names = method.args.iter().map(|a| a.ident.to_string());
        let docs = doc_string(&method.item.attrs);
        quote! {
            #(#cfgs)*
            #list.push(#krate::MethodInfo { name: #wire, params: &[#(#names),*], docs: #docs });
        }
    });

    let arms = service.methods.iter().map(|method| {
        let cfgs = cfg_attrs(&method.item.attrs);
        let wire = &method.wire;
        let ident = method.ident;
        let names = method.args.iter().map(|a| a.ident.to_string());
        let decode = method.args.iter().enumerate().map(|(index, a)| {
            let (ident, ty) = (a.ident, a.ty);
            quote!(let #ident: #ty = #reader.arg(#index)?;)
        });
        let args = method.args.iter().map(|a| a.ident);
        let call = quote!(<#imp as #trait_ident>::#ident(&*#svc, #(#args),*).await);
        let encode = match &method.output {
            Output::Result { .. } => quote! {
                match #call {
                    ::core::result::Result::Ok(value) => #krate::encode_reply(&value),
                    ::core::result::Result::Err(error) => #krate::encode_app_error(&error),
                }
            },
            _ => quote!(#krate::encode_reply(&#call)),
        };
        quote! {
            #(#cfgs)*
            #wire => {
                let mut #reader = #krate::ParamReader::new(#params_var, &[#(#names),*])?;
                #(#decode)*
                let #svc = ::std::sync::Arc::clone(&self.service);
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

            fn methods(&self) -> ::std::vec::Vec<#krate::MethodInfo> {
                let mut #list = ::std::vec::Vec::new();
                #(#infos)*
                #list
            }

            fn call(
                &self,
                #method_var: &str,
                #params_var: ::core::option::Option<&#krate::__private::RawValue>,
            ) -> ::core::result::Result<#krate::HandlerFuture, #krate::ErrorObject> {
                match #method_var {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#krate::__private::method_not_found(#method_var)),
                }
            }
        }
    }
}
