#[rpc_core::service]
pub trait Service {
    type Item;
    async fn get(&self) -> u8;
}

fn main() {}
