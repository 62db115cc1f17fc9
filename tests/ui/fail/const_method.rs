#[rpc_core::service]
pub trait Service {
    const async fn get(&self) -> u8;
}

fn main() {}
