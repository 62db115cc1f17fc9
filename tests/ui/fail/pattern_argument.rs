#[rpc_core::service]
pub trait Service {
    async fn add(&self, (a, b): (i32, i32)) -> i32;
}

fn main() {}
