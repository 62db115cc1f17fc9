#[rpc_core::service]
pub trait Service {
    async fn get<'a>(&'a self) -> u8;
}

fn main() {}
