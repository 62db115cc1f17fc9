#[rpc_core::service]
pub trait Service {
    async fn add(&self, _: i32) -> i32;
}

fn main() {}
