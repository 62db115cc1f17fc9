#[rpc_core::service]
pub trait Service {
    #[rpc(name = "limit")]
    const LIMIT: usize;
    async fn get(&self) -> u8;
}

fn main() {}
