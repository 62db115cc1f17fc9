macro_rules! methods {
    () => {
        async fn get(&self) -> u8;
    };
}

#[rpc_core::service]
pub trait Service {
    methods!();
}

fn main() {}
