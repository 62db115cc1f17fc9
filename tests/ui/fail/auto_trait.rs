#[rpc_core::service]
pub auto trait Service {}

fn main() {}
