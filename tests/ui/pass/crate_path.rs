//! `#[service(crate = "...")]`: the generated code names the runtime through
//! the given path, for a renamed dependency or a facade that re-exports it.

extern crate rpc_core as my_rpc;

mod facade {
    pub use ::rpc_core::*;
}

#[my_rpc::service(crate = "my_rpc")]
pub trait Renamed {
    async fn echo(&self, text: String) -> Result<String, String>;
}

#[rpc_core::service(crate = "::rpc_core")]
pub trait Absolute {
    async fn echo(&self, text: String) -> String;
}

#[facade::service(crate = "crate::facade")]
pub trait ThroughFacade {
    async fn echo(&self, text: String) -> String;
}

struct Impl;

impl Renamed for Impl {
    async fn echo(&self, text: String) -> Result<String, String> {
        Ok(text)
    }
}

impl Absolute for Impl {
    async fn echo(&self, text: String) -> String {
        text
    }
}

impl ThroughFacade for Impl {
    async fn echo(&self, text: String) -> String {
        text
    }
}

async fn _calls(a: RenamedClient, b: AbsoluteClient, c: ThroughFacadeClient) {
    let _: Result<String, my_rpc::RpcError<String>> = a.echo(String::new()).await;
    let _: Result<String, rpc_core::RpcError> = b.echo(String::new()).await;
    let _: Result<String, facade::RpcError> = c.echo(String::new()).await;
}

fn main() {
    let _ = my_rpc::Server::builder()
        .service(RenamedServer::new(Impl))
        .service(AbsoluteServer::new(Impl))
        .service(ThroughFacadeServer::new(Impl));
}
