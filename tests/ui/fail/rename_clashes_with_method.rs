#[rpc_core::service]
pub trait Service {
    async fn get(&self) -> u8;
    #[rpc(name = "get")]
    async fn load(&self) -> u8;
}

fn main() {}
