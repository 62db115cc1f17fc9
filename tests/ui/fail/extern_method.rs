#[rpc_core::service]
pub trait Service {
    async extern "C" fn get(&self) -> u8;
}

fn main() {}
