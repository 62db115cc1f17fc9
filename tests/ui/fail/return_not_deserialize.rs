// Serializable, so the server compiles; the client cannot decode it.
#[derive(serde::Serialize)]
pub struct Opaque;

#[rpc_core::service]
pub trait Service {
    async fn give(&self, id: u32) -> Result<u8, Opaque>;
}

fn main() {}
