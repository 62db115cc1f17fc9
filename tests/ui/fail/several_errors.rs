// Every mistake is reported at once, each at its own place.
#[rpc_core::service(namespace = "calc", timeout = 5)]
pub trait Service {
    fn sync(&self) -> u8;
    async fn by_value(self) -> u8;
    async fn borrowed(&self, name: &str);
    #[rpc(name = "sync")]
    async fn renamed(&self);
}

fn main() {}
