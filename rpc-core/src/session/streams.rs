//! Streams on the serving side: the session's table of open streams, each
//! stream's credit, and the task that sends a stream's items (PROTOCOL.md,
//! "Streams").
//!
//! A streaming call is admitted like any call, with an [`Opening`] that
//! its handler's [`Stream`] is handed to
//! ([`open_stream`]). When the handler returns, the call's own task opens
//! the stream (its id in the response), then becomes the stream's sender:
//! it takes an item from the producer only when the caller has credit for
//! more, writes it, and ends the stream. The task keeps the call's
//! in-flight permit until then, so an open stream counts as a call in
//! flight and keeps its connection from being idle.

use rustc_hash::FxHashMap as HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::{Stream as FuturesStream, StreamExt};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::message::streams::{self as envelope, CREDIT, UNSUBSCRIBE};
use crate::message::{ErrorObject, code};
use crate::outbox::Outbox;
use crate::params::ParamReader;
use crate::service::{self, Reply};
use crate::stream::{Meter, Stream};

/// A stream's items, encoded: each value's JSON, or the error that ends it.
type Items = Pin<Box<dyn FuturesStream<Item = Result<String, ErrorObject>> + Send>>;

/// One item's value as JSON text, written as a method's result is, but
/// kept as a `String`: [`service::encode_reply`]'s `RawValue` re-parses
/// the text to validate it, which for a small item cost about a fifth of
/// the server's instructions (the writer's output is JSON by construction).
fn encode_item<T: Serialize>(value: &T) -> Result<String, ErrorObject> {
    let mut json = Vec::with_capacity(32);
    crate::json::write(&mut json, value)
        .map_err(|e| e.to_string())
        .and_then(|()| String::from_utf8(json).map_err(|e| e.to_string()))
        .map_err(|e| {
            ErrorObject::internal(format_args!(
                "the stream's item could not be serialized: {e}"
            ))
        })
}

/// Why a stream ends before its producer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The caller sent `rpc.unsubscribe`: nothing more is sent.
    Unsubscribed,
    /// A graceful shutdown began: the stream ends with an end message
    /// carrying [`SHUTTING_DOWN`](code::SHUTTING_DOWN).
    ShuttingDown,
    /// The caller's connection is gone.
    Closed,
}

/// The session's open streams, created with its first streaming call.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    state: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// The id the next stream gets; ids start at 1 on every connection.
    last: u64,
    open: HashMap<u64, Arc<Flow>>,
    /// Set once every stream, present and future, must end.
    ending: Option<End>,
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new stream with `window` bytes of credit.
    fn open(&self, window: u64, meter: Arc<Meter>) -> Arc<Flow> {
        let mut table = self.lock();
        table.last += 1;
        let flow = Arc::new(Flow {
            id: table.last,
            window,
            state: Mutex::new(Credit {
                allowance: clamp(window),
                end: table.ending,
                answer: None,
            }),
            changed: Notify::new(),
            meter,
        });
        table.open.insert(flow.id, flow.clone());
        flow
    }

    fn remove(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Adds `bytes` of credit to stream `id`; whether it is open.
    fn grant(&self, id: u64, bytes: u64) -> bool {
        let flow = self.lock().open.get(&id).cloned();
        match flow {
            Some(flow) => {
                flow.grant(bytes);
                true
            }
            None => false,
        }
    }

    /// Ends stream `id` at the caller's request; whether it was open. If
    /// it was and `answer` is the request's id, the stream's task answers
    /// (`true`) once it has dropped the handler's stream, so that the
    /// caller, answered, knows the handler has let it go (a chat room has
    /// forgotten the member).
    fn unsubscribe(&self, id: u64, answer: Option<Bytes>) -> bool {
        let flow = self.lock().open.remove(&id);
        match flow {
            Some(flow) => {
                flow.lock().answer = answer;
                flow.end(End::Unsubscribed);
                true
            }
            None => false,
        }
    }

    /// Ends every open stream, and every stream opened from now on.
    pub(crate) fn end_all(&self, why: End) {
        let flows: Vec<Arc<Flow>> = {
            let mut table = self.lock();
            table.ending.get_or_insert(why);
            table.open.values().cloned().collect()
        };
        for flow in flows {
            flow.end(why);
        }
    }
}

/// A credit the wire can express, as a signed count (an item may take a
/// stream's allowance below zero).
fn clamp(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX).min(i64::MAX / 2)
}

/// One open stream's credit.
#[derive(Debug)]
struct Flow {
    id: u64,
    window: u64,
    state: Mutex<Credit>,
    changed: Notify,
    meter: Arc<Meter>,
}

#[derive(Debug)]
struct Credit {
    /// Bytes the server may still send: the window, plus credit granted,
    /// minus items sent.
    allowance: i64,
    end: Option<End>,
    /// The id of an `rpc.unsubscribe` request to answer once the stream's
    /// producer is dropped.
    answer: Option<Bytes>,
}

impl Flow {
    fn lock(&self) -> MutexGuard<'_, Credit> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until an item of `bytes` may be sent: it fits the allowance,
    /// or, for an item larger than the window, nothing is outstanding.
    /// `Err` if the stream ended first.
    async fn wait_for(&self, bytes: u64) -> Result<(), End> {
        let needed = clamp(bytes.min(self.window));
        // Usually there is credit: answer without a `Notified` (registering
        // and dropping one cost more than the rest of this function).
        {
            let credit = self.lock();
            if let Some(end) = credit.end {
                return Err(end);
            }
            if credit.allowance >= needed {
                return Ok(());
            }
        }
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            {
                let credit = self.lock();
                if let Some(end) = credit.end {
                    return Err(end);
                }
                if credit.allowance >= needed {
                    return Ok(());
                }
            }
            changed.await;
        }
    }

    /// Resolves when the stream has ended.
    async fn ended(&self) -> End {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(end) = self.lock().end {
                return end;
            }
            changed.await;
        }
    }

    fn spend(&self, bytes: u64) {
        let mut credit = self.lock();
        credit.allowance = credit.allowance.saturating_sub(clamp(bytes));
        self.meter.set(self.outstanding(credit.allowance));
    }

    fn grant(&self, bytes: u64) {
        {
            let mut credit = self.lock();
            credit.allowance = credit
                .allowance
                .saturating_add(clamp(bytes))
                .min(i64::MAX / 2);
            self.meter.set(self.outstanding(credit.allowance));
        }
        self.changed.notify_waiters();
    }

    fn end(&self, why: End) {
        self.lock().end.get_or_insert(why);
        self.changed.notify_waiters();
    }

    /// Bytes sent and not acknowledged, given the allowance.
    fn outstanding(&self, allowance: i64) -> u64 {
        u64::try_from(clamp(self.window).saturating_sub(allowance)).unwrap_or(0)
    }
}

/// A streaming call from its admission until its stream opens: where its
/// handler leaves the stream, and the call's in-flight permit.
pub(crate) struct Opening {
    table: Arc<Streams>,
    window: u64,
    items: Mutex<Option<(Items, Arc<Meter>)>>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Opening {
    /// A streaming call on `table`, with the caller's `window` (its
    /// `credit` member) or the default.
    pub(crate) fn new(table: Arc<Streams>, window: Option<u64>) -> Self {
        Self {
            table,
            window: window.unwrap_or(crate::stream::DEFAULT_WINDOW),
            items: Mutex::new(None),
            permit: Mutex::new(None),
        }
    }

    /// Keeps the call's in-flight permit until the stream ends.
    pub(crate) fn keep(&self, permit: OwnedSemaphorePermit) {
        *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
    }

    /// Opens the stream the handler returned, if it returned one, and sends
    /// it to the end: the response naming it (to request `id`), its items
    /// as credit allows, and its end. `false` if the handler returned none
    /// (its reply is then an error, to send as usual).
    pub(crate) async fn serve(&self, id: &[u8], outbox: &Outbox) -> bool {
        let Some((items, meter)) = self.items.lock().unwrap_or_else(|e| e.into_inner()).take()
        else {
            return false;
        };
        let flow = self.table.open(self.window, meter);
        let id = std::str::from_utf8(id).unwrap_or("null");
        outbox.wait_for_room().await;
        let opened = outbox.push(|buf| {
            envelope::write_opened(buf, id, flow.id);
            Ok::<_, Infallible>(())
        });
        if opened.is_ok() {
            let end = pump(&self.table, &flow, items, outbox).await;
            tracing::debug!(stream = flow.id, ?end, "stream ended");
        } else {
            drop(items);
        }
        self.table.remove(flow.id);
        // The producer is gone: now `rpc.unsubscribe` may be answered.
        let answer = flow.lock().answer.take();
        if let Some(answer) = answer {
            outbox.wait_for_room().await;
            super::respond::push_reply(outbox, &answer, service::encode_reply(&true));
        }
        true
    }
}

/// Sends the stream's items as credit allows, then its end. Returns why it
/// ended early, if it did. The stream leaves `table` before its end is
/// written: from then on `rpc.unsubscribe` answers `false`.
async fn pump(table: &Streams, flow: &Flow, mut items: Items, outbox: &Outbox) -> Option<End> {
    // One watch on the end for the whole stream, polled before each item,
    // rather than a new one (registered and dropped) per item.
    let ended = flow.ended();
    let mut ended = std::pin::pin!(ended);
    let end = loop {
        // The next item is read before there is credit for it, so that the
        // end is seen (and sent) without waiting for credit: the server
        // holds at most this one item ahead of its caller.
        let next = tokio::select! {
            biased;
            end = &mut ended => break end,
            next = items.next() => next,
        };
        let value = match next {
            Some(Ok(value)) => value,
            last => {
                let error = last.and_then(Result::err);
                outbox.wait_for_room().await;
                table.remove(flow.id);
                let _ = outbox.push(|buf| {
                    envelope::write_end(buf, flow.id, error.as_ref());
                    Ok::<_, Infallible>(())
                });
                return None;
            }
        };
        let bytes = value.len() as u64;
        if let Err(end) = flow.wait_for(bytes).await {
            break end;
        }
        outbox.wait_for_room().await;
        let sent = outbox.push(|buf| {
            envelope::write_item(buf, flow.id, &value);
            Ok::<_, Infallible>(())
        });
        if sent.is_err() {
            break End::Closed;
        }
        flow.spend(bytes);
    };
    // The producer is dropped here, which is how it learns to stop.
    drop(items);
    if end == End::ShuttingDown {
        table.remove(flow.id);
        let error = ErrorObject::new(
            code::SHUTTING_DOWN,
            "the server is shutting down; the stream ended early: open it again on another server or later",
        );
        let _ = outbox.push(|buf| {
            envelope::write_end(buf, flow.id, Some(&error));
            Ok::<_, Infallible>(())
        });
    }
    Some(end)
}

/// What [`immediate`] decided.
pub(crate) enum Immediate {
    /// Answer this now.
    Now(Reply),
    /// The stream's task answers, once its producer is dropped.
    Later,
}

/// `rpc.credit` and `rpc.unsubscribe`, answered in the session loop.
/// `None` for any other method. `later`: the request's id, when the answer
/// to an `rpc.unsubscribe` of an open stream may wait for the stream's
/// producer to be dropped (not in a batch, whose answers go together).
pub(crate) fn immediate(
    method: &str,
    params: Option<&RawValue>,
    table: Option<&Streams>,
    later: Option<&Bytes>,
) -> Option<Immediate> {
    match method {
        CREDIT => Some(Immediate::Now((|| {
            let mut reader = ParamReader::new(params, &["stream", "bytes"])?;
            let (stream, bytes): (u64, u64) = (reader.arg(0)?, reader.arg(1)?);
            service::encode_reply(&table.is_some_and(|t| t.grant(stream, bytes)))
        })())),
        UNSUBSCRIBE => Some(
            (|| {
                let mut reader = ParamReader::new(params, &["stream"])?;
                let stream: u64 = reader.arg(0)?;
                let open = table.is_some_and(|t| t.unsubscribe(stream, later.cloned()));
                if open && later.is_some() {
                    return Ok(Immediate::Later);
                }
                service::encode_reply(&open).map(|reply| Immediate::Now(Ok(reply)))
            })()
            .unwrap_or_else(|error| Immediate::Now(Err(error))),
        ),
        _ => None,
    }
}

/// Hands a streaming method's stream to its call (generated code calls
/// this with the handler's return value). The placeholder reply it returns
/// is replaced by the response that opens the stream.
pub fn open_stream<T, E>(stream: Stream<T, E>) -> Reply
where
    T: Serialize + Send + 'static,
    E: Serialize + Send + 'static,
{
    let Some(opening) = crate::context::opening() else {
        return Err(ErrorObject::internal(
            "a stream was returned outside a streaming call (a notification, or a handler called directly)",
        ));
    };
    let items: Items =
        Box::pin(stream.items.map(|item| match item {
            Ok(value) => encode_item(&value),
            Err(error) => Err(service::encode_app_error(&error).err().unwrap_or_else(|| {
                ErrorObject::internal("the stream's error could not be encoded")
            })),
        }));
    *opening.items.lock().unwrap_or_else(|e| e.into_inner()) = Some((items, stream.meter));
    Ok(RawValue::NULL.to_owned())
}
