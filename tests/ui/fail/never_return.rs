#[rpc_core::service]
pub trait Service {
    async fn stop(&self) -> !;
}

fn main() {}
