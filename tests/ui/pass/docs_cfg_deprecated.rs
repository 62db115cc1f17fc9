//! Doc comments reach the method table, `#[cfg]` removes a method from the
//! trait, the client and the server alike, and `#[deprecated]` carries over
//! to the client method.

use rpc_core::Service;

#[rpc_core::service]
pub trait Annotated {
    /// Adds one.
    ///
    /// Saturates at `i32::MAX`.
    async fn inc(&self, a: i32) -> i32;

    /// Compiled out: it even names a type that does not exist.
    #[cfg(any())]
    async fn gone(&self, x: NoSuchType) -> u8;

    #[cfg(all())]
    async fn kept(&self) -> u8;

    #[deprecated(note = "use `inc`")]
    async fn old(&self) -> i32;

    /// Alternatives under exclusive `cfg`s may share a name.
    #[cfg(target_pointer_width = "64")]
    async fn width(&self) -> u64;
    #[cfg(not(target_pointer_width = "64"))]
    async fn width(&self) -> u32;
}

struct Impl;

impl Annotated for Impl {
    async fn inc(&self, a: i32) -> i32 {
        a.saturating_add(1)
    }
    async fn kept(&self) -> u8 {
        0
    }
    async fn old(&self) -> i32 {
        0
    }
    #[cfg(target_pointer_width = "64")]
    async fn width(&self) -> u64 {
        64
    }
    #[cfg(not(target_pointer_width = "64"))]
    async fn width(&self) -> u32 {
        32
    }
}

/// Picked only if the client has no inherent `gone`: if the macro left the
/// compiled-out method on the client, `_no_gone` would not type-check.
trait Fallback {
    fn gone(&self) -> &'static str {
        "absent"
    }
}

impl Fallback for AnnotatedClient {}

fn _no_gone(client: AnnotatedClient) -> &'static str {
    client.gone()
}

async fn _calls(client: AnnotatedClient) {
    let _: Result<i32, rpc_core::RpcError> = client.inc(1).await;
    let _: Result<u8, rpc_core::RpcError> = client.kept().await;
}

#[allow(deprecated)]
async fn _deprecated(client: AnnotatedClient) {
    let _: Result<i32, rpc_core::RpcError> = client.old().await;
}

fn main() {
    let server = AnnotatedServer::new(Impl);
    let methods = server.methods();
    let names: Vec<_> = methods.iter().map(|m| m.name).collect();
    assert_eq!(names, ["inc", "kept", "old", "width"]);
    assert_eq!(methods[0].docs, "Adds one.\n\nSaturates at `i32::MAX`.");
    assert_eq!(methods[1].docs, "");
    let _ = rpc_core::Server::builder().service(server);
}
