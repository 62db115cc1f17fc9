#[rpc_core::service(namespace = "a", namespace = "b")]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
