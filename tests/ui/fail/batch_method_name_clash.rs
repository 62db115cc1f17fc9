#[rpc_core::service]
pub trait Service {
    async fn batch(&self, items: Vec<u8>) -> u8;
}

fn main() {}
