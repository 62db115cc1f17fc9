#[rpc_core::service]
pub trait Service {
    #[rpc(name = "")]
    async fn get(&self) -> u8;
}

fn main() {}
