//! The generated code names everything by its full path, so it compiles in a
//! module without the prelude.

mod hygienic {
    #![no_implicit_prelude]

    #[::rpc_core::service(namespace = "h")]
    pub trait Hygienic {
        /// Documented.
        async fn greet(&self, name: ::std::string::String) -> ::std::string::String;
        async fn maybe(
            &self,
            x: ::std::option::Option<u8>,
            list: ::std::vec::Vec<u8>,
        ) -> ::std::result::Result<u8, ::std::string::String>;
        async fn nothing(&self);
        #[rpc(name = "other")]
        async fn renamed(&self) -> bool;
    }

    pub struct Impl;

    impl Hygienic for Impl {
        async fn greet(&self, name: ::std::string::String) -> ::std::string::String {
            name
        }
        async fn maybe(
            &self,
            x: ::std::option::Option<u8>,
            _list: ::std::vec::Vec<u8>,
        ) -> ::std::result::Result<u8, ::std::string::String> {
            ::std::result::Result::Ok(x.unwrap_or(0))
        }
        async fn nothing(&self) {}
        async fn renamed(&self) -> bool {
            true
        }
    }

    pub async fn calls(client: HygienicClient) {
        let _: ::std::result::Result<u8, ::rpc_core::RpcError<::std::string::String>> = client
            .maybe(::std::option::Option::None, ::std::vec::Vec::new())
            .await;
        let _ = client.nothing().await;
    }

    pub fn server() -> HygienicServer<Impl> {
        HygienicServer::new(Impl)
    }
}

fn main() {
    let _ = hygienic::calls;
    let _ = rpc_core::Server::builder().service(hygienic::server());
}
