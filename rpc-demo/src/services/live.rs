//! The course's second WebSocket example: a page shows, as they arrive, the
//! lines an operator types at the server. `rpc-demo serve` reads them from
//! its terminal (the prompt `Mensagem: `), and `rpc-demo live-send TEXT`
//! publishes one from anywhere.
//!
//! As in the chat, a watcher that reads too slowly skips what it missed
//! past [`BUFFER`] posts and gets one [`LiveEvent::Lagged`] instead.

use std::sync::Arc;

use rpc_core::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::chat::now_ms;

/// Posts held for the slowest watcher before it lags.
pub const BUFFER: usize = 256;
/// The longest post, in bytes.
pub const MAX_TEXT: usize = 4096;

/// What a watcher receives. On the wire, an object with a `kind`:
/// `{"kind":"post","text":"Bom dia","at":1764547200000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A line the operator published.
    Post {
        /// The line.
        text: String,
        /// When the server received it, in milliseconds since the Unix
        /// epoch (the server's clock).
        at: u64,
    },
    /// This watcher read too slowly and skipped `skipped` posts.
    Lagged {
        /// How many posts were skipped.
        skipped: u64,
    },
}

/// Why a post is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
pub enum LiveError {
    /// The text is empty or longer than 4096 bytes.
    #[error("a post must be 1 to 4096 bytes")]
    BadText,
}

/// Lines pushed to every page that watches.
#[rpc_core::service(namespace = "live")]
pub trait Live {
    /// Every post from now on, as it is published, until you drop the
    /// stream.
    async fn watch(&self) -> Stream<LiveEvent>;
    /// Publishes `text` to every watcher; returns how many there are.
    async fn publish(&self, text: String) -> Result<u64, LiveError>;
}

/// The live feed. Clones share it.
#[derive(Debug, Clone)]
pub struct Feed {
    posts: Arc<broadcast::Sender<LiveEvent>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            posts: Arc::new(broadcast::channel(BUFFER).0),
        }
    }
}

impl Feed {
    /// Publishes `text` (what the server's terminal and `publish` do).
    ///
    /// # Errors
    /// [`LiveError::BadText`] for an empty or too long line.
    pub fn post(&self, text: &str) -> Result<u64, LiveError> {
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() || text.len() > MAX_TEXT {
            return Err(LiveError::BadText);
        }
        let post = LiveEvent::Post {
            text: text.to_owned(),
            at: now_ms(),
        };
        Ok(self.posts.send(post).map_or(0, |n| n as u64))
    }
}

impl Live for Feed {
    async fn watch(&self) -> Stream<LiveEvent> {
        let posts = self.posts.subscribe();
        Stream::new(futures_util::stream::unfold(
            posts,
            |mut posts| async move {
                let event = match posts.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        LiveEvent::Lagged { skipped }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((event, posts))
            },
        ))
    }

    async fn publish(&self, text: String) -> Result<u64, LiveError> {
        self.post(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn watchers_get_each_post_in_order() {
        let feed = Feed::default();
        assert_eq!(feed.post("before anyone watches"), Ok(0));
        let mut watcher = feed.watch().await;
        assert_eq!(feed.publish("Olá".into()).await, Ok(1));
        assert_eq!(feed.publish("Bom dia".into()).await, Ok(1));
        assert_eq!(feed.publish("  ".into()).await, Err(LiveError::BadText));
        for expected in ["Olá", "Bom dia"] {
            match watcher.next().await {
                Some(Ok(LiveEvent::Post { text, .. })) => assert_eq!(text, expected),
                other => panic!("{other:?}"),
            }
        }
    }
}
