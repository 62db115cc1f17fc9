//! Supertraits are kept; `Send`, `Sync` and `'static` may be written out even
//! though the macro adds them.

#[rpc_core::service]
pub trait Cloneable: Clone {
    async fn get(&self) -> u8;
}

#[rpc_core::service]
pub trait Explicit: Send + Sync + 'static {
    async fn get(&self) -> u8;
}

/// A service extending another: an implementation serves both.
#[rpc_core::service(namespace = "admin")]
pub trait Admin: Explicit + std::fmt::Debug {
    async fn stop(&self);
}

#[derive(Clone, Debug)]
struct Impl;

impl Cloneable for Impl {
    async fn get(&self) -> u8 {
        let _ = self.clone();
        1
    }
}

impl Explicit for Impl {
    async fn get(&self) -> u8 {
        2
    }
}

impl Admin for Impl {
    async fn stop(&self) {}
}

fn main() {
    let _ = rpc_core::Server::builder()
        .service(CloneableServer::new(Impl))
        .service(ExplicitServer::new(Impl))
        .service(AdminServer::new(Impl));
}
