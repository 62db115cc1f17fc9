// Deserializable, so the client compiles; the server cannot encode it.
#[derive(serde::Deserialize)]
pub struct Opaque;

#[rpc_core::service]
pub trait Service {
    async fn give(&self) -> Opaque;
}

fn main() {}
