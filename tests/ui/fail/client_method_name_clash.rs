#[rpc_core::service]
pub trait Service {
    async fn connect(&self, host: String) -> bool;
}

fn main() {}
