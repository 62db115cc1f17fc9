//! `-> Result<T, E>`: the client's error type is `RpcError<E>`, so the
//! method's own error arrives as `RpcError::Application(E)`.

use rpc_core::RpcError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum MathError {
    DivisionByZero,
    Overflow { at: u64 },
}

#[rpc_core::service]
pub trait Math {
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    async fn check(&self) -> Result<(), MathError>;
    async fn qualified(&self) -> std::result::Result<u8, String>;
}

struct Impl;

impl Math for Impl {
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivisionByZero);
        }
        a.checked_div(b).ok_or(MathError::Overflow { at: a as u64 })
    }
    async fn check(&self) -> Result<(), MathError> {
        Ok(())
    }
    async fn qualified(&self) -> Result<u8, String> {
        Err("no".to_owned())
    }
}

async fn _calls(client: MathClient) {
    let quotient: Result<i64, RpcError<MathError>> = client.div(1, 0).await;
    if let Err(RpcError::Application(MathError::DivisionByZero)) = quotient {}
    let _: Result<(), RpcError<MathError>> = client.check().await;
    let _: Result<u8, RpcError<String>> = client.qualified().await;
}

fn main() {
    let _ = rpc_core::Server::builder().service(MathServer::new(Impl));
}
