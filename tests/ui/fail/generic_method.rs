#[rpc_core::service]
pub trait Service {
    async fn get<T: serde::Serialize>(&self, value: T) -> u8;
}

fn main() {}
