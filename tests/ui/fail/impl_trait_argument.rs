#[rpc_core::service]
pub trait Service {
    async fn show(&self, value: impl std::fmt::Display) -> String;
}

fn main() {}
