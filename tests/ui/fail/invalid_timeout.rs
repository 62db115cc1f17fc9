#[rpc_core::service]
pub trait Service {
    #[rpc(timeout = "soon")]
    async fn slow(&self) -> u8;
}

fn main() {}
