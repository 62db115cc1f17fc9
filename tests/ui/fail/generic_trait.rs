#[rpc_core::service]
pub trait Service<T> {
    async fn get(&self) -> T;
}

fn main() {}
