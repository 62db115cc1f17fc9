#[rpc_core::service]
pub trait Service {
    async fn add(&self, a: f64, b: f64) -> f64;
    #[rpc(alias = "add")]
    async fn plus(&self, a: f64, b: f64) -> f64;
}

fn main() {}
