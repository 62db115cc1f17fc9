//! Batches: calls collected on the client and sent as one JSON-RPC batch.
//!
//! Members are serialized as they are added, without their ids (ids belong
//! to a session, which is only chosen when the batch is sent); sending
//! assigns the ids, registers each call, and writes the batch as one
//! message. Each [`BatchCall`] then resolves to its own typed result,
//! whatever order the server answers in.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{CallOptions, Client, decode, timeout_if_expired};
use crate::error::{CloseReason, Never, RpcError};
use crate::message;
use crate::session::{Answer, Session};

/// Calls collected to be sent as one JSON-RPC batch; see [`Client::batch`].
pub struct Batch {
    client: Client,
    /// Every member's JSON without its closing `}`, back to back; the id is
    /// added when the batch is sent (ids belong to a session).
    body: BytesMut,
    /// Each member's range in `body`, and for a call its result's channel.
    members: Vec<(std::ops::Range<usize>, Option<oneshot::Sender<Answer>>)>,
    state: Arc<BatchState>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("members", &self.members.len())
            .finish()
    }
}

struct BatchState {
    sent: OnceLock<Sent>,
}

/// A batch once sent.
struct Sent {
    session: Arc<Session>,
    /// The id given to each member (0 for a notification).
    ids: Vec<u64>,
    /// Every call of the batch shares one budget, counted from the send.
    deadline: Instant,
    timeout: Duration,
}

impl Batch {
    pub(super) fn new(client: Client) -> Self {
        Batch {
            client,
            body: BytesMut::new(),
            members: Vec::new(),
            state: Arc::new(BatchState {
                sent: OnceLock::new(),
            }),
        }
    }

    fn push_member<P: Serialize + ?Sized>(
        &mut self,
        method: &str,
        params: &P,
        answer: Option<oneshot::Sender<Answer>>,
    ) -> Result<usize, RpcError> {
        let start = self.body.len();
        if let Err(e) = message::write_batch_member(&mut self.body, method, params) {
            self.body.truncate(start);
            return Err(RpcError::Encode(e));
        }
        self.members.push((start..self.body.len(), answer));
        Ok(self.members.len() - 1)
    }

    /// Adds a call; its result is available from the returned [`BatchCall`]
    /// once the batch is [sent](Self::send).
    ///
    /// The result types are checked where the [`BatchCall`] is awaited.
    pub fn call<P, T, E>(&mut self, method: &str, params: &P) -> Result<BatchCall<T, E>, RpcError>
    where
        P: Serialize + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let index = self.push_member(method, params, Some(tx))?;
        Ok(BatchCall {
            method: method.to_owned(),
            answer: rx,
            state: self.state.clone(),
            index,
            _types: std::marker::PhantomData,
        })
    }

    /// Adds a notification: sent with the batch, no result.
    pub fn notify<P: Serialize + ?Sized>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<(), RpcError> {
        self.push_member(method, params, None).map(drop)
    }

    /// How many calls and notifications the batch holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sends the batch as one frame. Each [`BatchCall`] then resolves to its
    /// own typed result, whatever order the server answers in. An empty batch
    /// sends nothing (JSON-RPC forbids empty batches).
    pub async fn send(self) -> Result<(), RpcError> {
        if self.members.is_empty() {
            return Ok(());
        }
        let (timeout, deadline) = self.client.budget(CallOptions::new());
        if timeout.is_zero() {
            return Err(RpcError::Timeout(timeout));
        }
        let link = self.client.link(deadline, timeout).await?;
        let session = link.session.clone();
        let mut ids = Vec::with_capacity(self.members.len());
        let mut ranges = Vec::with_capacity(self.members.len());
        for (range, answer) in self.members {
            let id = match answer {
                Some(tx) => match session.calls.register_sender(tx, None) {
                    Ok(id) => id,
                    Err(e) => {
                        session.calls.forget(&ids);
                        return Err(e);
                    }
                },
                None => 0,
            };
            ids.push(id);
            ranges.push(range);
        }
        if tokio::time::timeout_at(deadline, session.outbox.wait_for_room())
            .await
            .is_err()
        {
            session.calls.forget(&ids);
            return Err(RpcError::Timeout(timeout));
        }
        let body = &self.body;
        let budget_ms = u64::try_from(
            deadline
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000),
        )
        .unwrap_or(u64::MAX);
        let pushed = session.outbox.push(|buf| {
            let members = ids
                .iter()
                .zip(&ranges)
                .map(|(id, range)| (*id, body.get(range.clone()).unwrap_or_default()));
            message::write_batch(buf, members, budget_ms);
            Ok::<_, serde_json::Error>(())
        });
        if let Err(e) = pushed {
            session.calls.forget(&ids);
            return Err(session.queue_error(e));
        }
        let _ = self.state.sent.set(Sent {
            session,
            ids,
            deadline,
            timeout,
        });
        Ok(())
    }
}

/// The result of one call of a [`Batch`]: `.await` it after the batch is sent.
pub struct BatchCall<T, E = Never> {
    method: String,
    answer: oneshot::Receiver<Answer>,
    state: Arc<BatchState>,
    index: usize,
    _types: std::marker::PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for BatchCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchCall")
            .field("method", &self.method)
            .field("index", &self.index)
            .finish()
    }
}

impl<T, E> IntoFuture for BatchCall<T, E>
where
    T: DeserializeOwned + Send + 'static,
    E: DeserializeOwned + Send + 'static,
{
    type Output = Result<T, RpcError<E>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Some(sent) = self.state.sent.get() else {
                return Err(RpcError::Closed(CloseReason::BatchNotSent));
            };
            match tokio::time::timeout_at(sent.deadline, self.answer).await {
                Ok(Ok(answer)) => {
                    decode(&self.method, answer).map_err(|e| timeout_if_expired(e, sent.timeout))
                }
                Ok(Err(_)) => Err(sent.session.calls.closed_error().widen()),
                Err(_) => {
                    if let Some(id) = sent.ids.get(self.index) {
                        sent.session.calls.forget(std::slice::from_ref(id));
                    }
                    Err(RpcError::Timeout(sent.timeout))
                }
            }
        })
    }
}
