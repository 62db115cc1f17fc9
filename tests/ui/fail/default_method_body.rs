#[rpc_core::service]
pub trait Service {
    async fn get(&self) -> u8 {
        0
    }
}

fn main() {}
