//! `#[rpc(name = "...")]` changes the wire name; the Rust name stays.
//! A method may take the wire name another method's Rust name would have had,
//! as long as that method is renamed away from it.

use rpc_core::Service;

#[rpc_core::service]
pub trait Renamed {
    #[rpc(name = "getUser")]
    async fn get_user(&self, id: u64) -> String;
    /// Swapped with `second`.
    #[rpc(name = "second")]
    async fn first(&self) -> u8;
    #[rpc(name = "first")]
    async fn second(&self) -> u8;
    #[rpc(name = "connect")]
    async fn connect_to(&self, host: String);
    #[rpc(name = "ünïcode")]
    async fn odd(&self);
}

struct Impl;

impl Renamed for Impl {
    async fn get_user(&self, id: u64) -> String {
        id.to_string()
    }
    async fn first(&self) -> u8 {
        1
    }
    async fn second(&self) -> u8 {
        2
    }
    async fn connect_to(&self, _host: String) {}
    async fn odd(&self) {}
}

async fn _calls(client: RenamedClient) {
    let _: Result<String, rpc_core::RpcError> = client.get_user(1).await;
    let _: Result<u8, rpc_core::RpcError> = client.first().await;
    let _: Result<(), rpc_core::RpcError> = client.connect_to("h".to_owned()).await;
}

fn main() {
    let server = RenamedServer::new(Impl);
    let names: Vec<_> = server.methods().iter().map(|m| m.name).collect();
    assert_eq!(names, ["getUser", "second", "first", "connect", "ünïcode"]);
    let _ = rpc_core::Server::builder().service(server);
}
