#[rpc_core::service]
pub trait Service
where
    Self: Sized,
{
    async fn get(&self) -> u8;
}

fn main() {}
