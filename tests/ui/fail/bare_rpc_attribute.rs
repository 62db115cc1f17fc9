#[rpc_core::service]
pub trait Service {
    #[rpc]
    async fn get(&self) -> u8;
}

fn main() {}
