#[rpc_core::service]
pub trait Service {
    #[rpc(oneway)]
    #[rpc(oneway)]
    async fn log(&self, line: String);
}

fn main() {}
