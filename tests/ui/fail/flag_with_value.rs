#[rpc_core::service]
pub trait Service {
    #[rpc(idempotent = true)]
    async fn read(&self) -> u8;
}

fn main() {}
