#[rpc_core::service]
#[rpc(name = "calc")]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
