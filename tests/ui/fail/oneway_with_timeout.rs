#[rpc_core::service]
pub trait Service {
    #[rpc(oneway, timeout = "1s")]
    async fn log(&self, line: String);
}

fn main() {}
