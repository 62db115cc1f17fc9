//! Streaming methods: items in order under per-stream credit, a stalled
//! stream holding back nothing else, the producer stopped by a drop, the
//! end on a lost connection or a shutdown, and the refusals (batch, HTTP,
//! notification).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{TestServer, Via, exchange, read_frame, read_json, send_frame, send_json, within};
use futures_util::StreamExt;
use rpc_core::{RpcError, Stream, StreamSender};
use serde_json::json;
use tokio::sync::{Mutex, Notify};

/// Why `watch` refuses or ends.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum WatchError {
    NoSuchKey,
    Broken { after: u32 },
}

#[rpc_core::service]
trait Feed {
    /// `0..count`, as fast as credit allows.
    async fn count(&self, count: u64) -> Stream<u64>;
    /// Strings of `size` bytes, without end, through a sender the test can
    /// watch (`Probe`).
    async fn blobs(&self, size: usize) -> Stream<String>;
    /// Refuses an empty key; else `steps` items, then ends with an error.
    async fn watch(&self, key: String, steps: u32) -> Result<Stream<u32, WatchError>, WatchError>;
    /// One string of each length in `lengths`.
    async fn strings(&self, lengths: Vec<usize>) -> Stream<String>;
    /// No item, ever; reports when it is dropped (`Probe::stopped`).
    async fn silent(&self) -> Stream<u64>;
    /// A plain method, for calls beside the streams.
    async fn add(&self, a: u64, b: u64) -> u64;
}

/// What the test sees of the `blobs` producers.
#[derive(Default)]
struct Probe {
    /// Items sent, over every `blobs` stream.
    sent: AtomicU64,
    progress: Notify,
    /// The last `blobs` stream's sender.
    sender: Mutex<Option<StreamSender<String>>>,
    /// Notified when a `blobs` producer stops, its stream closed.
    stopped: Notify,
    /// `silent` streams dropped so far.
    silent_dropped: AtomicU64,
    /// If set, the next `silent` stream's drop tells `dropping`, then
    /// waits for a message here before it counts as dropped.
    gate: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    dropping: Notify,
}

#[derive(Clone, Default)]
struct F(Arc<Probe>);

impl Feed for F {
    async fn count(&self, count: u64) -> Stream<u64> {
        Stream::iter(0..count)
    }

    async fn blobs(&self, size: usize) -> Stream<String> {
        let (tx, stream) = Stream::channel();
        *self.0.sender.lock().await = Some(tx.clone());
        let probe = self.0.clone();
        tokio::spawn(async move {
            while tx.send("x".repeat(size)).await.is_ok() {
                probe.sent.fetch_add(1, Ordering::SeqCst);
                probe.progress.notify_waiters();
            }
            probe.stopped.notify_one();
        });
        stream
    }

    async fn watch(&self, key: String, steps: u32) -> Result<Stream<u32, WatchError>, WatchError> {
        if key.is_empty() {
            return Err(WatchError::NoSuchKey);
        }
        let items = (0..steps)
            .map(Ok)
            .chain([Err(WatchError::Broken { after: steps })]);
        Ok(Stream::try_new(futures_util::stream::iter(items)))
    }

    async fn strings(&self, lengths: Vec<usize>) -> Stream<String> {
        Stream::iter(lengths.into_iter().map(|n| "s".repeat(n)))
    }

    async fn silent(&self) -> Stream<u64> {
        /// Tells the probe when the stream is dropped.
        struct Stopped(Arc<Probe>);
        impl Drop for Stopped {
            fn drop(&mut self) {
                let gate = self.0.gate.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(gate) = gate {
                    self.0.dropping.notify_one();
                    // Bounded: a test that fails never leaves this waiting.
                    // `block_in_place` hands this worker's other tasks (the
                    // session's, perhaps in its LIFO slot) to another thread,
                    // so holding the drop open blocks nothing else.
                    let _ = tokio::task::block_in_place(|| {
                        gate.recv_timeout(std::time::Duration::from_secs(30))
                    });
                }
                self.0.silent_dropped.fetch_add(1, Ordering::SeqCst);
                self.0.stopped.notify_one();
            }
        }
        let stopped = Stopped(self.0.clone());
        Stream::new(futures_util::stream::pending().map(move |n: u64| {
            let _ = &stopped;
            n
        }))
    }

    async fn add(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

async fn serve(via: Via) -> (TestServer, F) {
    let feed = F::default();
    let fx = TestServer::start_via(
        via,
        rpc_core::Server::builder().service(FeedServer::new(feed.clone())),
    )
    .await;
    (fx, feed)
}

/// Waits until the `blobs` producers have sent at least `n` items.
async fn sent_at_least(probe: &Probe, n: u64) {
    loop {
        let progress = probe.progress.notified();
        if probe.sent.load(Ordering::SeqCst) >= n {
            return;
        }
        progress.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_arrive_in_order_and_the_stream_ends() {
    for via in [Via::Tcp, Via::WebSocket, Via::Memory] {
        let (fx, _) = serve(via).await;
        let client = FeedClient::from(fx.client().await);
        let stream = within("the stream to open", client.count(1000))
            .await
            .unwrap();
        let items: Vec<u64> = within("every item", stream.map(Result::unwrap).collect()).await;
        assert_eq!(items, (0..1000).collect::<Vec<_>>(), "over {via:?}");
        fx.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_error_refuses_the_opening_or_ends_the_stream() {
    let (fx, _) = serve(Via::Tcp).await;
    let client = FeedClient::from(fx.client().await);
    match within("a refused opening", client.watch(String::new(), 3)).await {
        Err(RpcError::Application(WatchError::NoSuchKey)) => {}
        other => panic!("expected the typed refusal, got {other:?}"),
    }
    let mut stream = within("the stream to open", client.watch("k".into(), 3))
        .await
        .unwrap();
    for step in 0..3 {
        assert_eq!(
            within("an item", stream.next()).await.unwrap().unwrap(),
            step
        );
    }
    match within("the end", stream.next()).await {
        Some(Err(RpcError::Application(WatchError::Broken { after: 3 }))) => {}
        other => panic!("expected the typed end, got {other:?}"),
    }
    assert!(within("after the end", stream.next()).await.is_none());
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_holds_back_neither_other_streams_nor_calls() {
    const SIZE: usize = 1000;
    let (fx, feed) = serve(Via::Tcp).await;
    let client = FeedClient::from(fx.client().await);
    // Opened and never read.
    let stalled = within("the stalled stream to open", client.blobs(SIZE))
        .await
        .unwrap();
    let window_items = rpc_core::DEFAULT_WINDOW / (SIZE as u64 + 2);
    within(
        "the stalled stream's window to fill",
        sent_at_least(&feed.0, window_items),
    )
    .await;

    let second = within("a second stream", client.count(10_000))
        .await
        .unwrap();
    let items: Vec<u64> = within(
        "10,000 items of the second stream",
        second.map(Result::unwrap).collect(),
    )
    .await;
    assert_eq!(items.len(), 10_000);
    let calls = futures_util::future::join_all((0..1000).map(|i| client.add(i, 1)));
    for (i, sum) in within("1,000 calls", calls).await.into_iter().enumerate() {
        assert_eq!(sum.unwrap(), i as u64 + 1);
    }

    // Meanwhile the stalled stream's producer sent one window, no more:
    // the items in its window, one the server holds, one in the channel.
    let sent = feed.0.sent.load(Ordering::SeqCst);
    assert!(
        sent <= window_items + 3,
        "{sent} items of {SIZE} bytes sent to a reader that read none"
    );
    let sender = feed.0.sender.lock().await.clone().unwrap();
    let outstanding = sender.unacknowledged_bytes();
    assert!(
        outstanding <= rpc_core::DEFAULT_WINDOW && outstanding > rpc_core::DEFAULT_WINDOW / 2,
        "{outstanding} bytes unacknowledged"
    );
    drop(stalled);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_small_items_arrive_complete_and_in_order() {
    let (fx, _) = serve(Via::Tcp).await;
    let client = FeedClient::from(fx.client().await);
    let mut stream = within("the stream to open", client.count(1_000_000))
        .await
        .unwrap();
    let mut expected = 0u64;
    let read = async {
        while let Some(item) = stream.next().await {
            assert_eq!(item.unwrap(), expected);
            expected += 1;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), read)
        .await
        .expect("a million items within two minutes");
    assert_eq!(expected, 1_000_000);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_the_producer_within_one_window() {
    const SIZE: usize = 1000;
    let (fx, feed) = serve(Via::Tcp).await;
    let client = FeedClient::from(fx.client().await);
    let mut stream = within("the stream to open", client.blobs(SIZE))
        .await
        .unwrap();
    for _ in 0..100 {
        assert_eq!(
            within("an item", stream.next())
                .await
                .unwrap()
                .unwrap()
                .len(),
            SIZE
        );
    }
    let stopped = feed.0.stopped.notified();
    drop(stream);
    within("the producer to stop", stopped).await;
    let sent = feed.0.sent.load(Ordering::SeqCst);
    let window_items = rpc_core::DEFAULT_WINDOW / SIZE as u64;
    assert!(
        sent <= 100 + window_items + 3,
        "{sent} items produced for 100 read"
    );
    // The connection goes on.
    assert_eq!(within("a call", client.add(2, 3)).await.unwrap(), 5);
    fx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_ends_the_stream_on_both_sides() {
    let (fx, feed) = serve(Via::Tcp).await;
    // Server side: a raw peer opens a stream and disconnects.
    let mut raw = fx.raw().await;
    let opened = exchange(
        &mut raw,
        &json!({"jsonrpc": "2.0", "method": "blobs", "params": [10], "id": 1}),
    )
    .await;
    assert_eq!(opened["result"]["stream"], 1, "{opened}");
    let stopped = feed.0.stopped.notified();
    drop(raw);
    within("the producer to stop after the disconnect", stopped).await;

    // Client side: the server goes away under an open stream.
    let client = FeedClient::from(fx.client().await);
    let mut stream = within("the stream to open", client.blobs(10))
        .await
        .unwrap();
    assert!(within("an item", stream.next()).await.unwrap().is_ok());
    let shutdown = tokio::spawn(fx.shutdown());
    let ended = within("the stream to end", async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await;
    assert!(
        matches!(ended, Some(Err(_))),
        "the stream ended with an error, not silently: {ended:?}"
    );
    within("the shutdown", shutdown).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_open_streams_with_the_shutdown_error_within_its_grace() {
    let feed = F::default();
    let fx = TestServer::start(
        rpc_core::Server::builder()
            .grace_period(std::time::Duration::from_secs(30))
            .service(FeedServer::new(feed.clone())),
    )
    .await;
    let client = FeedClient::from(fx.client().await);
    // Stalled: never read, so only the end message can finish it.
    let mut stream = within("the stream to open", client.blobs(100))
        .await
        .unwrap();
    within("the window to fill", sent_at_least(&feed.0, 100)).await;
    // Well within the 30 s grace: the stream does not hold the shutdown.
    within("the shutdown", fx.shutdown()).await;
    let ended = within("the stream to end", async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await;
    match ended {
        Some(Err(RpcError::Server(e))) => assert_eq!(e.code, rpc_core::code::SHUTTING_DOWN, "{e}"),
        other => panic!("expected the shutdown end, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_method_is_refused_in_a_batch_over_http_and_as_a_notification() {
    let (fx, _) = serve(Via::Tcp).await;
    let mut raw = fx.raw().await;
    send_json(
        &mut raw,
        &json!([
            {"jsonrpc": "2.0", "method": "count", "params": [3], "id": 1},
            {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 2},
        ]),
    )
    .await;
    let answers = read_json(&mut raw).await;
    let refused = &answers
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == 1)
        .unwrap()["error"];
    assert_eq!(refused["code"], -32600, "{answers}");
    assert!(
        refused["message"].as_str().unwrap().contains("batch"),
        "{refused}"
    );
    assert!(
        answers
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == 2 && a["result"] == 3)
    );

    // Over HTTP: the error says to use WebSocket.
    let http = FeedClient::from(
        within(
            "an HTTP client",
            rpc_core::Client::builder().connect(format!("http://{}/rpc", fx.addr())),
        )
        .await
        .unwrap(),
    );
    match within("a stream over HTTP", http.count(3)).await {
        Err(RpcError::Server(e)) => {
            assert_eq!(e.code, -32600);
            assert!(e.message.contains("WebSocket"), "{e}");
        }
        other => panic!("expected a refusal over HTTP, got {other:?}"),
    }

    // Over REST, by GET or POST: the same advice.
    for request in [
        "GET /api/count/3 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_owned(),
        "POST /api/count HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 3\r\nConnection: close\r\n\r\n[3]".to_owned(),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut http = common::connect(fx.addr()).await;
        http.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        within("the REST answer", http.read_to_string(&mut answer))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("WebSocket"), "{answer}");
    }

    // As a notification: nothing is opened, the connection goes on.
    send_json(
        &mut raw,
        &json!({"jsonrpc": "2.0", "method": "count", "params": [3]}),
    )
    .await;
    let answer = exchange(
        &mut raw,
        &json!({"jsonrpc": "2.0", "method": "add", "params": [1, 1], "id": 3}),
    )
    .await;
    assert_eq!(answer, json!({"jsonrpc": "2.0", "result": 2, "id": 3}));
    fx.shutdown().await;
}

/// The wire of PROTOCOL.md's example, byte for byte: the opening with a
/// credit of 10 bytes, items while credit lasts, more credit, the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_follows_the_credit_byte_for_byte() {
    async fn expect_frame(raw: &mut tokio::net::TcpStream, expected: &str) {
        let frame = within("a frame", read_frame(raw))
            .await
            .expect("a frame, not the end");
        assert_eq!(String::from_utf8_lossy(&frame), expected);
    }
    let item = |n: u32| {
        format!(r#"{{"jsonrpc":"2.0","method":"rpc.item","params":{{"stream":1,"value":{n}}}}}"#)
    };
    let (fx, _) = serve(Via::Tcp).await;
    let mut raw = fx.raw().await;
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"count","params":[12],"id":7,"credit":10}"#,
    )
    .await;
    expect_frame(
        &mut raw,
        r#"{"jsonrpc":"2.0","result":{"stream":1},"id":7}"#,
    )
    .await;
    // Ten one-byte values fit ten bytes of credit, then the server waits.
    for n in 0..10 {
        expect_frame(&mut raw, &item(n)).await;
    }
    // A ping is answered next: the server waits for credit, and sent no
    // item without it.
    send_frame(&mut raw, br#"{"jsonrpc":"2.0","method":"rpc.ping","id":8}"#).await;
    expect_frame(&mut raw, r#"{"jsonrpc":"2.0","result":"pong","id":8}"#).await;
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"rpc.credit","params":{"stream":1,"bytes":4}}"#,
    )
    .await;
    // "10" and "11" are two bytes each; the end needs no credit.
    expect_frame(&mut raw, &item(10)).await;
    expect_frame(&mut raw, &item(11)).await;
    expect_frame(
        &mut raw,
        r#"{"jsonrpc":"2.0","method":"rpc.end","params":{"stream":1}}"#,
    )
    .await;
    // Unsubscribing an ended stream answers false.
    send_frame(
        &mut raw,
        br#"{"jsonrpc":"2.0","method":"rpc.unsubscribe","params":{"stream":1},"id":9}"#,
    )
    .await;
    expect_frame(&mut raw, r#"{"jsonrpc":"2.0","result":false,"id":9}"#).await;
    fx.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_timeout_ends_a_silent_stream_and_stops_its_producer() {
    let (fx, feed) = serve(Via::Memory).await;
    let client = FeedClient::from(fx.client().await);
    let idle = std::time::Duration::from_secs(5);
    let mut stream = within("the stream to open", client.silent())
        .await
        .unwrap()
        .idle_timeout(idle);
    let stopped = feed.0.stopped.notified();
    let started = tokio::time::Instant::now();
    match within("the idle timeout", stream.next()).await {
        Some(Err(RpcError::Timeout(after))) => assert_eq!(after, idle),
        other => panic!("expected the idle timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= idle);
    assert!(within("after the timeout", stream.next()).await.is_none());
    // The client unsubscribed: the server dropped the producer.
    within("the producer to be dropped", stopped).await;
    assert_eq!(within("a call", client.add(1, 1)).await.unwrap(), 2);
    fx.shutdown().await;
}

/// A reader that has read less than half its window, facing an item larger
/// than the credit left: it must grant what it read once it has nothing
/// left to read, or both sides wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_item_after_a_small_one_does_not_stall_a_small_window() {
    let (fx, _) = serve(Via::Tcp).await;
    let client = fx.client().await;
    // 56 and 136 bytes of JSON through a 150-byte window.
    let stream = within(
        "the stream to open",
        client.open_stream::<_, String, rpc_core::Never, rpc_core::Never>(
            "strings",
            &(vec![54usize, 134, 54],),
            rpc_core::CallOptions::new().window(150),
        ),
    )
    .await
    .unwrap();
    let items: Vec<usize> = within(
        "every item",
        stream.map(|item| item.unwrap().len()).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(items, [54, 134, 54]);
    fx.shutdown().await;
}

/// `rpc.unsubscribe` is answered only once the handler's stream is dropped
/// (a chat room has forgotten the member by then), on the wire and through
/// `RemoteStream::close`. First with a drop held open: a call made meanwhile
/// is answered, the `rpc.unsubscribe` only after the drop; then many times
/// over, at full speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn unsubscribe_is_answered_after_the_handlers_stream_is_dropped() {
    let (fx, feed) = serve(Via::Tcp).await;
    let mut raw = fx.raw().await;
    let (release, gate) = std::sync::mpsc::channel();
    *feed.0.gate.lock().unwrap() = Some(gate);
    let opened = exchange(
        &mut raw,
        &json!({"jsonrpc": "2.0", "method": "silent", "id": 1}),
    )
    .await;
    assert_eq!(opened["result"]["stream"], json!(1), "{opened}");
    let dropping = feed.0.dropping.notified();
    send_json(
        &mut raw,
        &json!({"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"stream": 1}, "id": 2}),
    )
    .await;
    within("the drop to begin", dropping).await;
    let answer = exchange(
        &mut raw,
        &json!({"jsonrpc": "2.0", "method": "rpc.ping", "id": 3}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "result": "pong", "id": 3}),
        "answered before the drop"
    );
    release.send(()).unwrap();
    let answer = within("the answer", read_json(&mut raw)).await;
    assert_eq!(answer, json!({"jsonrpc": "2.0", "result": true, "id": 2}));
    assert_eq!(feed.0.silent_dropped.load(Ordering::SeqCst), 1);
    for n in 2..=50u64 {
        let opened = exchange(
            &mut raw,
            &json!({"jsonrpc": "2.0", "method": "silent", "id": n * 2}),
        )
        .await;
        assert_eq!(opened["result"]["stream"], json!(n), "{opened}");
        let answer = exchange(
            &mut raw,
            &json!({"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"stream": n}, "id": n * 2 + 1}),
        )
        .await;
        assert_eq!(
            answer,
            json!({"jsonrpc": "2.0", "result": true, "id": n * 2 + 1})
        );
        assert_eq!(
            feed.0.silent_dropped.load(Ordering::SeqCst),
            n,
            "answered before the drop"
        );
    }
    let client = FeedClient::from(fx.client().await);
    for n in 51..=100u64 {
        let stream = within("the stream to open", client.silent()).await.unwrap();
        within(
            "the close",
            stream.close(std::time::Duration::from_secs(10)),
        )
        .await
        .unwrap();
        assert_eq!(
            feed.0.silent_dropped.load(Ordering::SeqCst),
            n,
            "closed before the drop"
        );
    }
    fx.shutdown().await;
}
