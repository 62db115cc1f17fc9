pub trait Service {
    fn get(&self) -> u8;
}

struct Impl;

#[rpc_core::service]
impl Service for Impl {
    fn get(&self) -> u8 {
        0
    }
}

fn main() {}
