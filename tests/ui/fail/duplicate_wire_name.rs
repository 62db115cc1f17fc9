#[rpc_core::service]
pub trait Service {
    #[rpc(name = "fetch")]
    async fn get(&self) -> u8;
    #[rpc(name = "fetch")]
    async fn load(&self) -> u8;
}

fn main() {}
