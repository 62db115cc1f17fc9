#[rpc_core::service]
pub trait Service {
    async fn fork(&self) -> Self;
}

fn main() {}
