#[rpc_core::service]
pub trait Service {
    #[rpc(timeout = "2")]
    async fn slow(&self) -> u8;
}

fn main() {}
