#[rpc_core::service]
pub trait Service {
    #[rpc(oneway)]
    async fn log(&self, line: String) -> bool;
}

fn main() {}
