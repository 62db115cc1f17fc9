#[rpc_core::service]
pub trait Finder {
    async fn discover(&self, pattern: String) -> Vec<String>;
}

fn main() {}
