#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct MyError;

type Result<T> = std::result::Result<T, MyError>;

#[rpc_core::service]
pub trait Service {
    async fn count(&self) -> Result<u32>;
}

fn main() {}
