//! Legal but unusual traits: one without methods, and an `unsafe trait`.

use rpc_core::Service;

#[rpc_core::service]
pub trait Empty {}

/// Implementors promise something; calling the methods stays safe.
#[rpc_core::service]
pub unsafe trait Promise {
    async fn kept(&self) -> bool;
}

struct Impl;

impl Empty for Impl {}

unsafe impl Promise for Impl {
    async fn kept(&self) -> bool {
        true
    }
}

fn _client(client: EmptyClient) -> EmptyClient {
    client.with_timeout(std::time::Duration::from_secs(1))
}

fn main() {
    let empty = EmptyServer::new(Impl);
    assert!(empty.methods().is_empty());
    let _ = rpc_core::Server::builder()
        .service(empty)
        .service(PromiseServer::new(Impl));
}
