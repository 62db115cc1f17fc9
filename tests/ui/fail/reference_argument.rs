#[rpc_core::service]
pub trait Service {
    async fn greet(&self, name: &str) -> String;
}

fn main() {}
