#[rpc_core::service(namespace = calc)]
pub trait Service {
    async fn get(&self) -> u8;
}

fn main() {}
