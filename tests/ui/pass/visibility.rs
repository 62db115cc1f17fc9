//! The client and server take the trait's visibility.

mod services {
    #[rpc_core::service]
    pub(crate) trait Internal {
        async fn internal(&self) -> u8;
    }

    pub mod nested {
        #[rpc_core::service]
        pub(super) trait Parent {
            async fn parent(&self) -> u8;
        }

        #[rpc_core::service]
        pub(in crate::services) trait Scoped {
            async fn scoped(&self) -> u8;
        }
    }

    #[rpc_core::service]
    trait Private {
        async fn private(&self) -> u8;
    }

    struct Impl;

    impl Private for Impl {
        async fn private(&self) -> u8 {
            0
        }
    }

    impl nested::Parent for Impl {
        async fn parent(&self) -> u8 {
            0
        }
    }

    impl nested::Scoped for Impl {
        async fn scoped(&self) -> u8 {
            0
        }
    }

    pub(crate) fn serve() {
        let _ = rpc_core::Server::builder()
            .service(PrivateServer::new(Impl))
            .service(nested::ParentServer::new(Impl))
            .service(nested::ScopedServer::new(Impl));
    }

    async fn _calls(a: PrivateClient, b: nested::ParentClient, c: nested::ScopedClient) {
        let _ = a.private().await;
        let _ = b.parent().await;
        let _ = c.scoped().await;
    }
}

struct Impl;

impl services::Internal for Impl {
    async fn internal(&self) -> u8 {
        0
    }
}

async fn _calls(client: services::InternalClient) {
    let _: Result<u8, rpc_core::RpcError> = client.internal().await;
}

fn main() {
    services::serve();
    let _ = rpc_core::Server::builder().service(services::InternalServer::new(Impl));
}
