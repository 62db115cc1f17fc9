#[rpc_core::service]
pub struct Service {
    value: u8,
}

fn main() {}
