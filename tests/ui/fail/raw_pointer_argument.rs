#[rpc_core::service]
pub trait Service {
    async fn read(&self, at: *const u8) -> u8;
}

fn main() {}
