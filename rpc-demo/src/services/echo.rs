//! The echo server of the first sockets lab: what goes in comes back.

/// Sends text back unchanged.
#[rpc_core::service]
pub trait Echo {
    /// Returns `text` unchanged.
    async fn echo(&self, text: String) -> String;
}

/// The echo service's implementation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, text: String) -> String {
        text
    }
}
