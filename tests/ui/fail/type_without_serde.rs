// Neither `Serialize` nor `Deserialize`, used as an argument and as the
// result: one error per missing bound and place, each at the type, none
// repeated for the generated batch.
pub struct Opaque;

#[rpc_core::service]
pub trait Service {
    async fn swap(&self, value: Opaque) -> Opaque;
}

fn main() {}
