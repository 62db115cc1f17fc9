#[rpc_core::service]
pub trait Service {
    async unsafe fn get(&self) -> u8;
}

fn main() {}
