//! `#[rpc(timeout = "...")]`, `#[rpc(oneway)]` and `#[rpc(idempotent)]`, and
//! the generated typed batch.

use rpc_core::{BatchCall, Never, RpcError};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Full {
    Disk,
}

#[rpc_core::service]
pub trait Store {
    /// Slow: a longer default budget.
    #[rpc(timeout = "1.5s")]
    async fn compact(&self) -> u64;
    /// Fire and forget.
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// Oneway with an explicit unit return.
    #[rpc(oneway)]
    async fn ping(&self) -> ();
    /// Safe to retry.
    #[rpc(idempotent, timeout = "200ms")]
    async fn get(&self, key: String) -> Option<String>;
    #[rpc(idempotent)]
    async fn put(&self, key: String, value: String) -> Result<(), Full>;
}

struct Impl;

impl Store for Impl {
    async fn compact(&self) -> u64 {
        0
    }
    async fn log(&self, _line: String) {}
    async fn ping(&self) {}
    async fn get(&self, _key: String) -> Option<String> {
        None
    }
    async fn put(&self, _key: String, _value: String) -> Result<(), Full> {
        Ok(())
    }
}

#[allow(dead_code)]
async fn use_client(client: StoreClient) -> Result<(), RpcError> {
    let _: Result<(), RpcError> = client.log("x".into()).await;
    let _: Result<u64, RpcError> = client.compact().await;
    let _: Result<(), RpcError<Full>> = client.put("k".into(), "v".into()).await;

    let mut batch: StoreBatch = client.batch();
    let compacted: BatchCall<u64, Never> = batch.compact()?;
    let (): () = batch.log("in a batch".into())?;
    let stored: BatchCall<(), Full> = batch.put("k".into(), "v".into())?;
    batch.await?;
    let _: Result<u64, RpcError> = compacted.await;
    let _: Result<(), RpcError<Full>> = stored.await;

    let plain: rpc_core::Batch = client.batch().into();
    assert!(plain.is_empty());
    Ok(())
}

fn main() {
    let _ = rpc_core::Server::builder().service(StoreServer::new(Impl));
}
