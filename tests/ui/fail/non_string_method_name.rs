#[rpc_core::service]
pub trait Service {
    #[rpc(name = 42)]
    async fn get(&self) -> u8;
}

fn main() {}
