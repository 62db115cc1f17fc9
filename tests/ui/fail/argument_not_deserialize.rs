// Serializable, so the client compiles; the server cannot decode it.
#[derive(serde::Serialize)]
pub struct Opaque;

#[rpc_core::service]
pub trait Service {
    async fn take(&self, value: Opaque);
}

fn main() {}
