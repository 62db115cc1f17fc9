#[rpc_core::service(namespace = "my calc")]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
