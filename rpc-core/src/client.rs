//! The client: many calls in flight on one multiplexed connection.
//!
//! A [`Client`] is a cheap handle (clone it freely, share it between tasks);
//! all clones use one connection. Each call gets a fresh numeric id and an
//! entry in the table of pending calls; a reader task matches responses to
//! entries by id, and a writer task sends the requests of all callers in as
//! few writes as possible (see [`WriteQueue`]).
//!
//! When the connection breaks, the reader fails every pending call at once
//! with [`RpcError::Closed`], and later calls fail immediately: nothing waits
//! on a dead socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use crate::connection::{QueueError, WriteQueue};
use crate::error::RpcError;
use crate::frame::{DEFAULT_MAX_FRAME, FrameDecoder, sub_bytes};
use crate::message::{self, ErrorObject, RawResponse, code};

/// Default time a call waits for its response: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of requests buffered before callers wait for the socket.
const WRITE_BUFFER: usize = 1024 * 1024;

/// A connection to a server, shared by every clone.
///
/// Generated clients (`FooClient`) wrap one; use it directly to call methods
/// by name, or to share one connection between several generated clients.
///
/// ```no_run
/// # async fn demo() -> Result<(), rpc_core::RpcError> {
/// let client = rpc_core::Client::connect("127.0.0.1:7070").await?;
/// let sum: f64 = client.call("add", &(2.0, 3.0)).await?;
/// assert_eq!(sum, 5.0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    conn: Arc<Connection>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field("closed", &self.conn.shared.lock().closed)
            .finish()
    }
}

/// Options for a new connection.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    timeout: Duration,
    max_frame: usize,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

impl ClientBuilder {
    /// How long each call waits for its response. Default: [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest frame body accepted or sent, in bytes. Default: 16 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Opens a TCP connection to `addr` (with `TCP_NODELAY`).
    pub async fn connect(
        self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Client, RpcError> {
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|source| RpcError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Ok(self.start(read, write))
    }

    /// Runs the protocol over any byte stream split in two halves (a TLS
    /// stream, an in-memory pipe). Must be called inside a Tokio runtime.
    pub fn start<R, W>(self, read: R, write: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            queue: WriteQueue::new(self.max_frame, WRITE_BUFFER),
            calls: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn({
            let shared = shared.clone();
            async move {
                if let Err(e) = shared.queue.run_writer(write).await {
                    shared.close(format!("writing to the server failed: {e}"));
                }
            }
        });
        let reader = tokio::spawn(read_loop(shared.clone(), read, self.max_frame));
        Client {
            conn: Arc::new(Connection {
                shared,
                reader: reader.abort_handle(),
            }),
            timeout: self.timeout,
        }
    }
}

/// Owns the connection's tasks: the last [`Client`] clone to go closes it.
struct Connection {
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Flushes what is queued, then shuts down the write half.
        self.shared.queue.close();
        self.reader.abort();
    }
}

/// State shared between callers, the reader and the writer.
struct Shared {
    queue: WriteQueue,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Calls {
    pending: HashMap<u64, oneshot::Sender<Answer>>,
    /// Set once the connection is unusable: why.
    closed: Option<String>,
    /// The last error the server sent without an id (it could not tell which
    /// call it concerns); reported if the connection then closes.
    last_unattributed: Option<ErrorObject>,
}

/// What the reader hands a waiting call.
enum Answer {
    /// The raw JSON of `result`, sliced from the frame.
    Result(Bytes),
    Error(ErrorObject),
    Malformed(String),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn closed_error(&self) -> RpcError {
        RpcError::Closed(
            self.lock()
                .closed
                .clone()
                .unwrap_or_else(|| "the connection was closed".to_owned()),
        )
    }

    /// Marks the connection closed and fails every pending call.
    fn close(&self, reason: String) {
        let pending = {
            let mut calls = self.lock();
            if calls.closed.is_none() {
                let reason = match calls.last_unattributed.take() {
                    Some(e) => format!("{reason}; the server's last message was: {}", e.message),
                    None => reason,
                };
                calls.closed = Some(reason);
            }
            std::mem::take(&mut calls.pending)
        };
        // Dropping the senders wakes every waiting call with `Closed`.
        drop(pending);
        self.queue.close();
    }

    fn register(&self) -> Result<(u64, oneshot::Receiver<Answer>), RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut calls = self.lock();
        if let Some(reason) = &calls.closed {
            return Err(RpcError::Closed(reason.clone()));
        }
        calls.pending.insert(id, tx);
        Ok((id, rx))
    }

    fn dispatch(&self, frame: Bytes) {
        let Ok(text) = std::str::from_utf8(&frame) else {
            tracing::warn!("the server sent a frame that is not UTF-8; ignored");
            return;
        };
        if text.trim_start().starts_with('[') {
            match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(members) => members
                    .iter()
                    .for_each(|m| self.dispatch_one(&frame, m.get())),
                Err(e) => tracing::warn!(error = %e, "the server sent an invalid batch; ignored"),
            }
        } else {
            self.dispatch_one(&frame, text);
        }
    }

    fn dispatch_one(&self, frame: &Bytes, text: &str) {
        let response: RawResponse<'_> = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the server sent a message that is not a response; ignored");
                return;
            }
        };
        if let Some(method) = response.method {
            tracing::debug!(%method, "the server sent a notification");
            return;
        }
        let Some(id) = response.id.and_then(|id| id.get().parse::<u64>().ok()) else {
            if let Some(error) = response.error {
                tracing::warn!(%error, "the server sent an error about no particular call");
                self.lock().last_unattributed = Some(error);
            }
            return;
        };
        let answer = match (response.result, response.error) {
            (Some(result), None) => Answer::Result(sub_bytes(frame, result.get())),
            (None, Some(error)) => Answer::Error(error),
            _ => {
                Answer::Malformed("a response must have exactly one of `result` and `error`".into())
            }
        };
        let waiter = self.lock().pending.remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(answer);
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, read: R, max_frame: usize) {
    let mut frames = FramedRead::new(read, FrameDecoder::new(max_frame));
    let reason = loop {
        match frames.next().await {
            Some(Ok(frame)) => shared.dispatch(frame),
            Some(Err(e)) => break e.to_string(),
            None => break "the server closed the connection".to_owned(),
        }
    };
    tracing::debug!(%reason, "connection closed");
    shared.close(reason);
}

/// Removes a call's pending entry if the call ends without its response
/// (timeout, or the caller dropped the future).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().pending.remove(&self.id);
        }
    }
}

impl Client {
    /// Connects to `addr` with the default options.
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Client, RpcError> {
        ClientBuilder::default().connect(addr).await
    }

    /// Options for a new connection.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A handle on the same connection whose calls wait at most `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            conn: self.conn.clone(),
            timeout,
        }
    }

    /// The time limit of this handle's calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the connection is closed (new calls would fail at once).
    pub fn is_closed(&self) -> bool {
        self.conn.shared.lock().closed.is_some()
    }

    /// Calls `method` with `params` (any value that serializes to a JSON
    /// array or object) and decodes the result as `T`.
    ///
    /// An application error (code [`APPLICATION_ERROR`](code::APPLICATION_ERROR))
    /// whose `data` decodes as `E` is returned as [`RpcError::Application`].
    pub async fn call<P, T, E>(&self, method: &str, params: &P) -> Result<T, RpcError<E>>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        match self
            .request(method, params)
            .await
            .map_err(RpcError::widen)?
        {
            Answer::Result(json) => {
                serde_json::from_slice(&json).map_err(|e| decode_error(method, e))
            }
            Answer::Error(error) => Err(application_error(error)),
            Answer::Malformed(why) => Err(RpcError::Decode(why)),
        }
    }

    /// Sends `method` as a notification: no id, no response, no waiting
    /// beyond handing the bytes to the connection.
    pub async fn notify<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(), RpcError> {
        let shared = &self.conn.shared;
        shared.queue.wait_for_room().await;
        shared
            .queue
            .push(|buf| message::write_request(buf, method, params, None))
            .map_err(|e| self.queue_error(e))
    }

    async fn request<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<Answer, RpcError> {
        let shared = &*self.conn.shared;
        let (id, answer) = shared.register()?;
        let mut guard = PendingGuard {
            shared,
            id,
            armed: true,
        };
        shared.queue.wait_for_room().await;
        shared
            .queue
            .push(|buf| message::write_request(buf, method, params, Some(id)))
            .map_err(|e| self.queue_error(e))?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => {
                guard.armed = false;
                Ok(answer)
            }
            Ok(Err(_)) => Err(shared.closed_error()),
            Err(_) => Err(RpcError::Timeout(self.timeout)),
        }
    }

    #[cold]
    fn queue_error(&self, e: QueueError<serde_json::Error>) -> RpcError {
        match e {
            QueueError::Closed => self.conn.shared.closed_error(),
            QueueError::TooLarge(e) => RpcError::Frame(e),
            QueueError::Encode(e) => RpcError::Encode(e),
        }
    }
}

#[cold]
fn decode_error<E>(method: &str, e: serde_json::Error) -> RpcError<E> {
    RpcError::Decode(format!(
        "the result of `{method}` has an unexpected shape: {e}"
    ))
}

#[cold]
fn application_error<E: DeserializeOwned>(error: ErrorObject) -> RpcError<E> {
    if error.code == code::APPLICATION_ERROR {
        if let Some(data) = &error.data {
            if let Ok(value) = E::deserialize(data) {
                return RpcError::Application(value);
            }
        }
    }
    RpcError::Server(error)
}
