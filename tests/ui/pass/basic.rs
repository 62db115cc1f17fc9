//! The plain forms: several arguments, no arguments, unit returns, and the
//! client's own constructors. Two services share one server.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{RpcError, Service};

#[rpc_core::service]
pub trait Basic {
    async fn add(&self, a: i64, b: i64, c: i64) -> i64;
    async fn ping(&self) -> String;
    async fn reset(&self);
    async fn set(&self, value: u32) -> ();
}

#[rpc_core::service]
pub trait Other {
    async fn other(&self, flag: bool) -> bool;
}

struct Impl;

impl Basic for Impl {
    async fn add(&self, a: i64, b: i64, c: i64) -> i64 {
        a + b + c
    }
    async fn ping(&self) -> String {
        "pong".to_owned()
    }
    async fn reset(&self) {}
    async fn set(&self, _value: u32) {}
}

impl Other for Impl {
    async fn other(&self, flag: bool) -> bool {
        !flag
    }
}

async fn _calls(client: BasicClient) {
    let _: Result<i64, RpcError> = client.add(1, 2, 3).await;
    let _: Result<String, RpcError> = client.ping().await;
    let _: Result<(), RpcError> = client.reset().await;
    let _: Result<(), RpcError> = client.set(7).await;
}

async fn _client_api(addr: std::net::SocketAddr) -> Result<(), RpcError> {
    let client: BasicClient = BasicClient::connect(addr).await?;
    let _: BasicClient = BasicClient::connect("localhost:1234").await?;
    let slow: BasicClient = client.with_timeout(Duration::from_secs(1));
    let connection: &rpc_core::Client = slow.inner();
    let _shared = OtherClient::new(connection.clone());
    let _copy = client.clone();
    println!("{client:?}");
    Ok(())
}

fn main() {
    let basic = BasicServer::new(Impl);
    assert_eq!(basic.name(), "Basic");
    let names: Vec<_> = basic.methods().iter().map(|m| m.name).collect();
    assert_eq!(names, ["add", "ping", "reset", "set"]);
    let params: Vec<_> = basic.methods().iter().map(|m| m.params).collect();
    assert_eq!(params, [&["a", "b", "c"][..], &[], &[], &["value"]]);

    let other = OtherServer::from_arc(Arc::new(Impl));
    let _ = rpc_core::Server::builder().service(basic).service(other);
}
