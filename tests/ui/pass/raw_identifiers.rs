//! Raw identifiers: the wire names and parameter names drop the `r#`.

use rpc_core::Service;

#[rpc_core::service]
pub trait r#Keywords {
    async fn r#type(&self, r#match: u8, r#fn: String) -> u8;
    async fn r#async(&self);
}

struct Impl;

impl Keywords for Impl {
    async fn r#type(&self, r#match: u8, _: String) -> u8 {
        r#match
    }
    async fn r#async(&self) {}
}

async fn _calls(client: KeywordsClient) {
    let _: Result<u8, rpc_core::RpcError> = client.r#type(1, String::new()).await;
    let _: Result<(), rpc_core::RpcError> = client.r#async().await;
}

fn main() {
    let server = KeywordsServer::new(Impl);
    assert_eq!(server.name(), "Keywords");
    let methods = server.methods();
    assert_eq!(methods[0].name, "type");
    assert_eq!(methods[0].params, ["match", "fn"]);
    assert_eq!(methods[1].name, "async");
    let _ = rpc_core::Server::builder().service(server);
}
