#[rpc_core::service]
pub trait Service {
    async fn get<'a>(&self, id: u8) -> u8;
}

fn main() {}
