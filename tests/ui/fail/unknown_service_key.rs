#[rpc_core::service(name = "calc")]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
