#[rpc_core::service]
pub trait Service {
    const LIMIT: usize;
    async fn get(&self) -> u8;
}

fn main() {}
