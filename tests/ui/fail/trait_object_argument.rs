#[rpc_core::service]
pub trait Service {
    async fn show(&self, value: Box<dyn std::fmt::Display + Send>) -> String;
}

fn main() {}
