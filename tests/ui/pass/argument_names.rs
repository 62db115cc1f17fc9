//! Arguments and methods named like the generated code's own variables,
//! fields and methods.

use rpc_core::Service;

#[rpc_core::service]
pub trait Names {
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        method: String,
        params: Vec<u8>,
        client: u8,
        service: u8,
        reader: u8,
        value: u8,
        error: u8,
        timeout: u8,
    ) -> u8;
    #[allow(clippy::too_many_arguments)]
    async fn internals(
        &self,
        __method: u8,
        __params: u8,
        __reader: u8,
        __service: u8,
        __methods: u8,
        __value: u8,
        __error: u8,
    ) -> Result<u8, u8>;
    async fn methods(&self, name: u8) -> u8;
    async fn name(&self) -> u8;
    async fn from_arc(&self) -> u8;
    async fn service(&self, service: u8) -> u8;
    async fn client(&self, client: u8) -> u8;
    async fn value(&self, value: u8) -> Result<u8, u8>;
    async fn error(&self, error: u8) -> Result<u8, u8>;
}

struct Impl;

impl Names for Impl {
    async fn call(
        &self,
        method: String,
        params: Vec<u8>,
        client: u8,
        service: u8,
        reader: u8,
        value: u8,
        error: u8,
        timeout: u8,
    ) -> u8 {
        (method.len() + params.len()) as u8 + client + service + reader + value + error + timeout
    }
    async fn internals(
        &self,
        __method: u8,
        __params: u8,
        __reader: u8,
        __service: u8,
        __methods: u8,
        __value: u8,
        __error: u8,
    ) -> Result<u8, u8> {
        Ok(__method + __params + __reader + __service + __methods + __value + __error)
    }
    async fn methods(&self, name: u8) -> u8 {
        name
    }
    async fn name(&self) -> u8 {
        0
    }
    async fn from_arc(&self) -> u8 {
        0
    }
    async fn service(&self, service: u8) -> u8 {
        service
    }
    async fn client(&self, client: u8) -> u8 {
        client
    }
    async fn value(&self, value: u8) -> Result<u8, u8> {
        Ok(value)
    }
    async fn error(&self, error: u8) -> Result<u8, u8> {
        Err(error)
    }
}

async fn _calls(client: NamesClient) {
    let _: Result<u8, rpc_core::RpcError> = client.call("m".into(), vec![], 1, 2, 3, 4, 5, 6).await;
    let _: Result<u8, rpc_core::RpcError<u8>> = client.internals(1, 2, 3, 4, 5, 6, 7).await;
    let _: Result<u8, rpc_core::RpcError> = client.client(1).await;
    let _: Result<u8, rpc_core::RpcError> = client.service(1).await;
}

fn main() {
    let server = NamesServer::new(Impl);
    // `Service::name`, not the RPC method of the same name.
    assert_eq!(Service::name(&server), "Names");
    let call = &Service::methods(&server)[0];
    assert_eq!(
        call.params,
        [
            "method", "params", "client", "service", "reader", "value", "error", "timeout"
        ]
    );
    let _ = rpc_core::Server::builder().service(server);
}
