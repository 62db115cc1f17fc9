#[rpc_core::service(crate = "not a path")]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
