#[rpc_core::service]
pub trait Service {
    async fn name(&self) -> &'static str;
}

fn main() {}
