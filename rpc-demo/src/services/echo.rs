//! The echo server of the first sockets lab: what goes in comes back.

/// Sends text back unchanged.
#[rpc_core::service]
pub trait Echo {
    /// Returns `text` unchanged.
    #[rpc(read_only)]
    async fn echo(&self, text: String) -> String;
    /// Waits `ms` milliseconds, then returns `ms`: a slow call, to watch
    /// timeouts, deadlines and cancellation at work.
    #[rpc(read_only)]
    async fn sleep(&self, ms: u64) -> u64;
}

/// The echo service's implementation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, text: String) -> String {
        text
    }

    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        ms
    }
}
