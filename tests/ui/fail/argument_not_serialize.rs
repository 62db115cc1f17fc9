// Deserializable, so the server compiles; the client cannot encode it.
#[derive(serde::Deserialize)]
pub struct Opaque;

#[rpc_core::service]
pub trait Service {
    async fn take(&self, id: u32, value: Opaque) -> u8;
}

fn main() {}
