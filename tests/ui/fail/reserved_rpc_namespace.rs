#[rpc_core::service(namespace = "rpc")]
pub trait Service {
    async fn get(&self) -> u8;
    async fn set(&self, value: u8);
}

fn main() {}
