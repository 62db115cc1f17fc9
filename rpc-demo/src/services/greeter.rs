//! The course's first RPC: send a name, get a greeting back.

/// Greets people by name.
#[rpc_core::service]
pub trait Greeter {
    /// Returns `Olá, {name}!`.
    #[rpc(read_only)]
    async fn hello(&self, name: String) -> String;
}

/// The greeter's implementation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Greet;

impl Greeter for Greet {
    async fn hello(&self, name: String) -> String {
        format!("Olá, {name}!")
    }
}
