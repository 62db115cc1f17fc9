//! The client proxy: `FooClient`, one `async` method per trait method.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

use crate::ast::{Output, Service};
use crate::attr::cfg_attrs;

use super::{carried_attrs, ok_type};

pub(crate) fn expand(service: &Service<'_>, krate: &syn::Path) -> TokenStream {
    let trait_ident = &service.item.ident;
    let vis = &service.item.vis;
    let client = format_ident!("{}Client", trait_ident);
    let cfgs: Vec<_> = cfg_attrs(&service.item.attrs).collect();
    let struct_doc = format!(
        "Client proxy for [`{trait_ident}`]: each method sends one JSON-RPC call and awaits its result.\n\n\
         Cheap to clone; all clones share one multiplexed connection."
    );

    let methods = service.methods.iter().map(|method| {
        let attrs = carried_attrs(method);
        let ident = method.ident;
        let wire = &method.wire;
        let args = method.args.iter().map(|a| {
            let (ident, ty) = (a.ident, a.ty);
            quote!(#ident: #ty)
        });
        let ok = ok_type(&method.output);
        let error = match &method.output {
            Output::Result { err, .. } => quote!(#krate::RpcError<#err>),
            _ => quote!(#krate::RpcError),
        };
        // A type without `Serialize` or `Deserialize` fails a bound of
        // `Client::call`, which rustc reports at the call, at its params and
        // at its `.await`: all three carry the span of the method's name, so
        // the user sees one error there, naming the type.
        let refs = method.args.iter().map(|a| a.ident);
        let params = if method.args.is_empty() {
            quote_spanned!(ident.span()=> &#krate::__private::NoParams)
        } else {
            quote_spanned!(ident.span()=> &( #(&#refs,)* ))
        };
        let body = quote_spanned! {ident.span()=>
            {
                self.client.call(#wire, #params).await
            }
        };
        quote! {
            #(#attrs)*
            #vis async fn #ident(&self, #(#args),*) -> ::core::result::Result<#ok, #error>
            #body
        }
    });

    quote! {
        #(#cfgs)*
        #[doc = #struct_doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client {
            client: #krate::Client,
        }

        #(#cfgs)*
        impl #client {
            /// Connects to a server at `addr` with the default options
            /// (see [`rpc_core::ClientBuilder`] for others).
            #vis async fn connect<A>(addr: A) -> ::core::result::Result<Self, #krate::RpcError>
            where
                A: #krate::__private::ToSocketAddrs + ::core::fmt::Display,
            {
                ::core::result::Result::Ok(Self::new(#krate::Client::connect(addr).await?))
            }

            /// Wraps an existing connection; several generated clients may share one.
            #vis fn new(client: #krate::Client) -> Self {
                Self { client }
            }

            /// The underlying connection.
            #vis fn inner(&self) -> &#krate::Client {
                &self.client
            }

            /// A proxy on the same connection whose calls wait at most `timeout`.
            #vis fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { client: self.client.with_timeout(timeout) }
            }

            #(#methods)*
        }
    }
}
