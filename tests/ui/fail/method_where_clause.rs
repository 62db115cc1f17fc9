#[rpc_core::service]
pub trait Service {
    async fn get(&self) -> u8
    where
        Self: Sized;
}

fn main() {}
