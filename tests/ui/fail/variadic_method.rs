#[rpc_core::service]
pub trait Service {
    async fn get(&self, args: ...) -> u8;
}

fn main() {}
