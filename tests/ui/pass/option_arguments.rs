//! `Option<T>` arguments and results (a missing trailing argument decodes as
//! `None`).

use rpc_core::RpcError;

#[rpc_core::service]
pub trait Lookup {
    async fn find(&self, key: String, limit: Option<u32>, tag: Option<String>) -> Option<Vec<u8>>;
    async fn first(&self, keys: Option<Vec<String>>) -> Result<Option<String>, String>;
}

struct Impl;

impl Lookup for Impl {
    async fn find(
        &self,
        _key: String,
        _limit: Option<u32>,
        _tag: Option<String>,
    ) -> Option<Vec<u8>> {
        None
    }
    async fn first(&self, keys: Option<Vec<String>>) -> Result<Option<String>, String> {
        Ok(keys.and_then(|k| k.into_iter().next()))
    }
}

async fn _calls(client: LookupClient) {
    let _: Result<Option<Vec<u8>>, RpcError> =
        client.find("k".into(), None, Some("t".into())).await;
    let _: Result<Option<String>, RpcError<String>> = client.first(None).await;
}

fn main() {
    let _ = rpc_core::Server::builder().service(LookupServer::new(Impl));
}
