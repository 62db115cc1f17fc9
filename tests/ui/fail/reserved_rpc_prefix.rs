#[rpc_core::service]
pub trait Service {
    #[rpc(name = "rpc.discover")]
    async fn describe(&self) -> String;
}

fn main() {}
