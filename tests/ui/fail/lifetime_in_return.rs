use std::borrow::Cow;

#[rpc_core::service]
pub trait Service {
    async fn name(&self) -> Cow<'static, str>;
}

fn main() {}
