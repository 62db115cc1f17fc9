#[rpc_core::service]
pub trait Service {
    async fn get(&'static self) -> u8;
}

fn main() {}
