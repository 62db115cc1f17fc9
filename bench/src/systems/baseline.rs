//! The plain baseline: what one writes by hand with tokio-util's
//! `LengthDelimitedCodec` and serde_json, on the same wire format as the
//! library (4-byte big-endian length, JSON-RPC 2.0 body).
//!
//! Deliberately ordinary: one writer task fed by a channel that sends (and so
//! flushes) each message on its own, a mutex-guarded map of pending ids on the
//! client, one task per request on the server, `serde_json::Value` for params
//! and results.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::{Connection, RunningServer, listen, tcp_connect};
use crate::counting::{CountingIo, WriteCounter};

#[derive(Serialize)]
struct OutRequest<'a, P> {
    jsonrpc: &'static str,
    method: &'a str,
    params: P,
    id: u64,
}

#[derive(Deserialize)]
struct InRequest {
    method: String,
    #[serde(default)]
    params: Value,
    id: Value,
}

#[derive(Serialize, Deserialize)]
struct Response {
    jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    id: Value,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(16 << 20)
        .new_codec()
}

/// Sends every message from `rx`, one `send` (write + flush) each.
async fn write_loop<W: AsyncWrite + Unpin>(write: W, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut sink = FramedWrite::new(write, codec());
    while let Some(message) = rx.recv().await {
        if sink.send(message).await.is_err() {
            break;
        }
    }
}

pub async fn start_server() -> RunningServer {
    let listener = listen().await;
    let addr = listener.local_addr().expect("local addr");
    let writes = WriteCounter::default();
    let accept = tokio::spawn({
        let writes = writes.clone();
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (read, write) = stream.into_split();
                tokio::spawn(serve(read, CountingIo::new(write, writes.clone())));
            }
        }
    });
    RunningServer::new(addr, Some(writes), move || accept.abort())
}

async fn serve<R, W>(read: R, write: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(write, rx));
    let mut frames = FramedRead::new(read, codec());
    while let Some(Ok(frame)) = frames.next().await {
        let Ok(request) = serde_json::from_slice::<InRequest>(&frame) else {
            break;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let response = handle(request).await;
            if let Ok(bytes) = serde_json::to_vec(&response) {
                let _ = tx.send(Bytes::from(bytes));
            }
        });
    }
    drop(tx);
    let _ = writer.await;
}

async fn handle(request: InRequest) -> Response {
    let result = match request.method.as_str() {
        "add" => serde_json::from_value::<(i64, i64)>(request.params)
            .map(|(a, b)| Value::from(a.wrapping_add(b)))
            .map_err(|e| e.to_string()),
        "echo" => serde_json::from_value::<(String,)>(request.params)
            .map(|(s,)| Value::String(s))
            .map_err(|e| e.to_string()),
        other => Err(format!("no method {other}")),
    };
    let (result, error) = match result {
        Ok(v) => (Some(v), None),
        Err(message) => (
            None,
            Some(serde_json::json!({"code": -32602, "message": message})),
        ),
    };
    Response {
        jsonrpc: "2.0".into(),
        result,
        error,
        id: request.id,
    }
}

/// A client: clones share the connection.
#[derive(Clone)]
pub struct Client(Arc<Inner>);

struct Inner {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>,
    next_id: AtomicU64,
    reader: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

pub async fn connect(addr: SocketAddr) -> Result<Connection, String> {
    let stream = tcp_connect(addr).await?;
    let fd = stream.as_raw_fd();
    let (read, write) = stream.into_split();
    let writes = WriteCounter::default();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(CountingIo::new(write, writes.clone()), rx));
    let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>> = Arc::default();
    let reader = tokio::spawn({
        let pending = pending.clone();
        async move {
            let mut frames = FramedRead::new(read, codec());
            while let Some(Ok(frame)) = frames.next().await {
                let Ok(response) = serde_json::from_slice::<Response>(&frame) else {
                    break;
                };
                let Some(id) = response.id.as_u64() else {
                    continue;
                };
                let waiter = pending.lock().unwrap().remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response);
                }
            }
            pending.lock().unwrap().clear();
        }
    });
    Ok(Connection {
        client: super::Client::Baseline(Client(Arc::new(Inner {
            tx,
            pending,
            next_id: AtomicU64::new(1),
            reader: reader.abort_handle(),
        }))),
        writes: Some(writes),
        fd: Some(fd),
    })
}

impl Client {
    pub async fn call<P: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
    ) -> Result<T, String> {
        let inner = &*self.0;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        inner.pending.lock().unwrap().insert(id, tx);
        let bytes = serde_json::to_vec(&OutRequest {
            jsonrpc: "2.0",
            method,
            params,
            id,
        })
        .map_err(|e| e.to_string())?;
        inner
            .tx
            .send(Bytes::from(bytes))
            .map_err(|_| "connection closed".to_owned())?;
        let response = rx.await.map_err(|_| "connection closed".to_owned())?;
        match (response.result, response.error) {
            (Some(result), None) => serde_json::from_value(result).map_err(|e| e.to_string()),
            (_, error) => Err(format!("error response: {error:?}")),
        }
    }
}
