#[rpc_core::service]
pub trait Service {
    async fn set(&mut self, value: u8);
}

fn main() {}
