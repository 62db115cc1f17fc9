//! User items named like the things the generated code uses (`Result`,
//! `Option`, `Box`, `Arc`, `Vec`, `core`, `S`, ...) do not change what it means.

#![allow(dead_code)]

use ::rpc_core::RpcError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct MyErr;

/// A one-parameter `Result`, as many crates define: in scope, it must not
/// change what the generated code's `Result` means. (A method returning it
/// is refused: see `ui/fail/result_alias.rs`.)
pub type Result<T> = ::std::result::Result<T, MyErr>;

pub struct S;
pub struct Arc;
pub struct Box;
pub struct Option;
pub struct Vec;
pub struct Client;
pub struct Service;
pub struct Future;
pub struct Send;
pub struct Sync;
pub struct Clone;
pub struct Debug;
pub struct Duration;
pub struct Display;
pub struct ToSocketAddrs;
pub struct ParamReader;
pub struct MethodInfo;
pub struct NoParams;
pub trait Sized {}
mod core {}
mod std {}
mod rpc_core {}
mod serde_json {}

#[::rpc_core::service]
pub trait Shadowed {
    async fn get(&self, id: u32) -> u32;
    async fn put(&self, id: u32, value: ::std::string::String) -> ::std::result::Result<(), MyErr>;
}

struct Impl;

impl Shadowed for Impl {
    async fn get(&self, id: u32) -> u32 {
        id
    }
    async fn put(&self, _: u32, _: ::std::string::String) -> ::std::result::Result<(), MyErr> {
        ::std::result::Result::Err(MyErr)
    }
}

async fn _calls(client: ShadowedClient) {
    let _: Result<::std::result::Result<u32, RpcError>> = ::std::result::Result::Ok(client.get(1).await);
    let _: ::std::result::Result<(), RpcError<MyErr>> = client.put(1, "x".into()).await;
}

fn main() {
    let _ = ::rpc_core::Server::builder().service(ShadowedServer::new(Impl));
}
