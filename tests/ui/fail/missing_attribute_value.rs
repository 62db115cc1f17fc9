#[rpc_core::service(namespace)]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
