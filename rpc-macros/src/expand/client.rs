//! The client proxy: `FooClient`, one `async` method per trait method.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

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
        let ok = match &method.stream {
            Some(stream) => {
                let item = stream.item;
                let end = match stream.error {
                    Some(error) => quote!(#error),
                    None => quote!(#krate::Never),
                };
                quote!(#krate::RemoteStream<#item, #end>)
            }
            None => ok_type(&method.output),
        };
        let error = match &method.output {
            Output::Result { err, .. } => quote!(#krate::RpcError<#err>),
            _ => quote!(#krate::RpcError),
        };
        // A type without `Serialize` or `Deserialize` fails a bound of
        // `Client::call`, which rustc reports at the call, at its params and
        // at its `.await`: all three carry the span of the method's name, so
        // the user sees one error there, naming the type.
        let refs = method.args.iter().map(|a| a.ident);
        let params_ty = params_ident(trait_ident, ident);
        let params = if method.args.is_empty() {
            quote_spanned!(ident.span()=> &#krate::__private::NoParams)
        } else {
            quote_spanned!(ident.span()=> &#params_ty( #(&#refs,)* ))
        };
        let options = call_options(method, krate);
        let body = if method.oneway.is_some() {
            quote_spanned! {ident.span()=>
                {
                    self.client.notify(#wire, #params).await
                }
            }
        } else {
            // A result type the client cannot decode is reported at the
            // method's return type.
            let span = match &method.item.sig.output {
                syn::ReturnType::Type(_, ty) => ty.span(),
                syn::ReturnType::Default => ident.span(),
            };
            if method.stream.is_some() {
                quote_spanned! {span=>
                    {
                        self.client.open_stream(#wire, #params, #options).await
                    }
                }
            } else {
                quote_spanned! {span=>
                    {
                        self.client.call_with(#wire, #params, #options).await
                    }
                }
            }
        };
        let batch_body = if method.oneway.is_some() {
            quote_spanned! {ident.span()=>
                {
                    self.batch.notify(#wire, #params)
                }
            }
        } else {
            quote_spanned! {ident.span()=>
                {
                    self.batch.call(#wire, #params)
                }
            }
        };
        let batch_ok = if method.oneway.is_some() {
            quote!(())
        } else {
            let err = match &method.output {
                Output::Result { err, .. } => quote!(#err),
                _ => quote!(#krate::Never),
            };
            quote!(#krate::BatchCall<#ok, #err>)
        };
        let batch_attrs = carried_attrs(method);
        let args_again = method.args.iter().map(|a| {
            let (ident, ty) = (a.ident, a.ty);
            quote!(#ident: #ty)
        });
        let method_is_stream = method.stream.is_some();
        let errors_doc = match &method.output {
            Output::Result { .. } => "`RpcError::Application` with the method's own error; otherwise any `RpcError`: the connection, the time limit, the server's refusal.",
            _ => "Any `RpcError`: the connection, the time limit, the server's refusal.",
        };
        let method = quote! {
            #(#attrs)*
            #[doc = ""]
            #[doc = "# Errors"]
            #[doc = #errors_doc]
            #[allow(clippy::too_many_arguments)]
            #vis async fn #ident(&self, #(#args),*) -> ::core::result::Result<#ok, #error>
            #body
        };
        let batch_method = quote! {
            #(#batch_attrs)*
            #[doc = ""]
            #[doc = "Adds this call to the batch; its result comes from the returned value once the batch is sent."]
            #[doc = ""]
            #[doc = "# Errors"]
            #[doc = "`RpcError::Encode` if the arguments cannot be serialized."]
            #[allow(clippy::too_many_arguments)]
            #vis fn #ident(&mut self, #(#args_again),*) -> ::core::result::Result<#batch_ok, #krate::RpcError>
            #batch_body
        };
        // A streaming method cannot be batched (the server refuses it):
        // the batch has no method for it.
        if method_is_stream {
            (method, TokenStream::new())
        } else {
            (method, batch_method)
        }
    });
    let (methods, batch_methods): (::std::vec::Vec<_>, ::std::vec::Vec<_>) = methods.unzip();
    let params_types = service
        .methods
        .iter()
        .filter(|m| !m.args.is_empty())
        .map(|m| params_type(trait_ident, m, krate));
    let batch = format_ident!("{}Batch", trait_ident);
    let batch_doc = format!(
        "Calls of [`{trait_ident}`] collected into one JSON-RPC batch: add calls with the methods, \
         `.await` the batch to send it, then `.await` each call's result.\n\n\
         ```text\nlet mut batch = client.batch();\nlet first = batch.method(..)?;\nbatch.await?;\nlet value = first.await?;\n```"
    );

    quote! {
        #(#params_types)*

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

            /// A client for every live instance of service `name` in
            /// `registry`, with the default options: calls are spread over
            /// the instances and go elsewhere when one fails (see
            /// `rpc_core::ClientBuilder::discover`).
            #vis async fn discover(
                registry: ::std::sync::Arc<dyn #krate::discovery::Registry>,
                name: &str,
            ) -> ::core::result::Result<Self, #krate::RpcError> {
                ::core::result::Result::Ok(Self::new(
                    #krate::Client::builder().discover(registry, name).await?,
                ))
            }

            /// Wraps an existing connection; several generated clients may
            /// share one: `OtherClient::from(this.inner().clone())`.
            #vis fn new(client: #krate::Client) -> Self {
                Self { client }
            }

            /// The underlying connection, to call methods by name or to put
            /// another service's client on it.
            #vis fn inner(&self) -> &#krate::Client {
                &self.client
            }

            /// A proxy on the same connection whose calls wait at most `timeout`.
            #vis fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { client: self.client.with_timeout(timeout) }
            }

            /// Starts a batch: calls collected here go out in one message.
            #vis fn batch(&self) -> #batch {
                #batch { batch: self.client.batch() }
            }

            #(#methods)*
        }

        #(#cfgs)*
        impl ::core::convert::From<#krate::Client> for #client {
            /// Puts this service's client on an existing connection.
            fn from(client: #krate::Client) -> Self {
                Self::new(client)
            }
        }

        #(#cfgs)*
        impl ::core::convert::AsRef<#krate::Client> for #client {
            fn as_ref(&self) -> &#krate::Client {
                &self.client
            }
        }

        #(#cfgs)*
        #[doc = #batch_doc]
        #[derive(::core::fmt::Debug)]
        #[must_use = "a batch is sent only when awaited"]
        #vis struct #batch {
            batch: #krate::Batch,
        }

        #(#cfgs)*
        impl #batch {
            #(#batch_methods)*
        }

        #(#cfgs)*
        impl ::core::convert::From<#batch> for #krate::Batch {
            fn from(batch: #batch) -> Self {
                batch.batch
            }
        }

        #(#cfgs)*
        impl ::core::future::IntoFuture for #batch {
            type Output = ::core::result::Result<(), #krate::RpcError>;
            type IntoFuture = ::core::pin::Pin<::std::boxed::Box<
                dyn ::core::future::Future<Output = Self::Output> + ::core::marker::Send,
            >>;

            /// Sends the batch.
            fn into_future(self) -> Self::IntoFuture {
                ::std::boxed::Box::pin(self.batch.send())
            }
        }
    }
}

/// The `CallOptions` of a method, from its attributes.
fn call_options(method: &crate::ast::Method<'_>, krate: &syn::Path) -> TokenStream {
    let mut options = quote!(#krate::CallOptions::new());
    if let Some((ms, _)) = &method.timeout {
        options = quote!(#options.timeout(::core::time::Duration::from_millis(#ms)));
    }
    if method.idempotent.is_some() {
        options = quote!(#options.idempotent());
    }
    options
}

/// The name of the params type of `method` (see [`params_type`]).
fn params_ident(trait_ident: &syn::Ident, method: &syn::Ident) -> syn::Ident {
    format_ident!(
        "__{}_{}_params",
        trait_ident,
        method.to_string().trim_start_matches("r#")
    )
}

/// One type per method holding references to its arguments, serialized as
/// the positional params array. The client method and the batch method
/// both send it, so an argument type that cannot be serialized is reported
/// once, here, at the argument's type, not once per use.
fn params_type(
    trait_ident: &syn::Ident,
    method: &crate::ast::Method<'_>,
    krate: &syn::Path,
) -> TokenStream {
    let name = params_ident(trait_ident, method.ident);
    let cfgs: Vec<_> = cfg_attrs(&method.item.attrs).collect();
    let types = method.args.iter().map(|a| a.ty);
    let len = method.args.len();
    let elements = method.args.iter().enumerate().map(|(i, a)| {
        let index = syn::Index {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            span: a.ty.span(),
        };
        quote_spanned!(a.ty.span()=> __seq.serialize_element(self.#index)?;)
    });
    quote! {
        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        struct #name<'__rpc>(#(&'__rpc #types,)*);

        #(#cfgs)*
        impl #krate::__private::serde::Serialize for #name<'_> {
            fn serialize<__S: #krate::__private::serde::Serializer>(
                &self,
                __serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                use #krate::__private::serde::ser::SerializeTuple as _;
                let mut __seq = __serializer.serialize_tuple(#len)?;
                #(#elements)*
                __seq.end()
            }
        }
    }
}
