#[rpc_core::service]
pub trait Service {
    async fn get(self: std::sync::Arc<Self>) -> u8;
}

fn main() {}
