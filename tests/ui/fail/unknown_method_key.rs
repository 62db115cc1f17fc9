#[rpc_core::service]
pub trait Service {
    #[rpc(rename = "fetch")]
    async fn get(&self) -> u8;
}

fn main() {}
