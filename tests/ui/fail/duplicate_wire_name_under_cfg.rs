// A method without `#[cfg]` is compiled in beside every other, so it cannot
// share its wire name with one that has a `#[cfg]`.
#[rpc_core::service]
pub trait Service {
    async fn get(&self) -> u8;
    #[cfg(unix)]
    #[rpc(name = "get")]
    async fn get_unix(&self) -> u8;
}

fn main() {}
