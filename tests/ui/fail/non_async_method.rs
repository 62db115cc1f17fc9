#[rpc_core::service]
pub trait Service {
    fn get(&self) -> u8;
}

fn main() {}
