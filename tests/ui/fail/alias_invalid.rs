#[rpc_core::service]
pub trait Service {
    #[rpc(alias = "two words")]
    async fn add(&self, a: f64, b: f64) -> f64;
}

fn main() {}
