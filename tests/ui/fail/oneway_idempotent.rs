#[rpc_core::service]
pub trait Service {
    #[rpc(oneway, idempotent)]
    async fn log(&self, line: String);
}

fn main() {}
