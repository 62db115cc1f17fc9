#[rpc_core::service]
pub trait Service {
    #[rpc(name = "rpc.discover")]
    async fn discover(&self) -> String;
}

fn main() {}
