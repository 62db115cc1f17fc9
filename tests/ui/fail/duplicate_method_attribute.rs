#[rpc_core::service]
pub trait Service {
    #[rpc(name = "fetch")]
    #[rpc(name = "load")]
    async fn get(&self) -> u8;
}

fn main() {}
