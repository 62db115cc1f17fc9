#[rpc_core::service]
pub trait Service {
    async fn get(id: u8) -> u8;
}

fn main() {}
