//! `rpc-bench ws-crates`: tokio-tungstenite against fastwebsockets, the two
//! crates alone (no JSON-RPC), used the way rpc-core's WebSocket transport
//! uses a socket.
//!
//! One connection over 127.0.0.1, both ends with the same crate, the server
//! and the client each on a current-thread runtime of its own thread (named
//! `bench-server` and `bench-client`, pinned to CPU 0 and CPU 1 as in the
//! main benchmark's `pipe`). Each end is the library's shape: a reader task,
//! and a writer task that takes every queued message from a channel, writes
//! each as a text frame into the crate's write buffer and flushes once per
//! batch. The server echoes every text message; the client keeps
//! `--in-flight` messages outstanding and checks every echo, byte for byte.
//!
//! The socket is opened after the handshake on both sides (tungstenite's
//! `from_raw_socket`, fastwebsockets' `after_handshake`), on a plain
//! `TcpStream`: the library's hyper upgrade costs the same whichever crate
//! comes after it, and only once per connection.
//!
//! The crates are measured in one run, interleaved (tungstenite, then
//! fastwebsockets, then again, `--rounds` times), so both see the same
//! machine load; the table gives every round and the medians.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::cpu;
use crate::scenario::pin_current_thread;

/// The largest message either end accepts (rpc-core's default frame limit).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The write buffer: rpc-core gives tungstenite 1 MiB (`write_buffer_size`).
const WRITE_BUFFER: usize = 1024 * 1024;
/// The most messages a writer takes from its channel per flush.
const BATCH: usize = 1024;

/// What `rpc-bench ws-crates` was asked to do.
pub struct WsArgs {
    pub rounds: usize,
    pub secs: f64,
    pub warmup: f64,
    pub in_flight: u64,
    /// Send exactly this many messages per measurement instead of running
    /// for `secs` (for instruction counts under callgrind; no CPU times).
    pub msgs: Option<u64>,
    pub crates: Vec<Crate>,
    pub sizes: Vec<Size>,
}

/// The crate under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crate {
    /// tokio-tungstenite, at the version rpc-core uses.
    Tungstenite,
    /// fastwebsockets, with `FragmentCollectorRead` and `WebSocketWrite`.
    Fast,
}

impl Crate {
    pub const ALL: [Crate; 2] = [Crate::Tungstenite, Crate::Fast];

    pub fn name(self) -> &'static str {
        match self {
            Crate::Tungstenite => "tokio-tungstenite",
            Crate::Fast => "fastwebsockets",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tungstenite" | "tokio-tungstenite" => Ok(Crate::Tungstenite),
            "fast" | "fastwebsockets" => Ok(Crate::Fast),
            _ => Err(format!(
                "unknown crate {s:?}; expected tungstenite or fastwebsockets"
            )),
        }
    }
}

/// The message size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// About 60 bytes: a JSON-RPC `add` request.
    Small,
    /// 64 KiB.
    Big,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Big];

    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Big => "big",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(Size::Small),
            "big" => Ok(Size::Big),
            _ => Err(format!("unknown size {s:?}; expected small or big")),
        }
    }

    /// The message every client sends, with a 10-digit slot for its
    /// sequence number, and where that slot is.
    fn template(self) -> (Vec<u8>, usize) {
        let (head, tail) = match self {
            Size::Small => (
                r#"{"jsonrpc":"2.0","method":"add","params":[1,2],"id":"#,
                "}",
            ),
            Size::Big => (
                r#"{"jsonrpc":"2.0","method":"echo","id":"#,
                r#","params":[""#,
            ),
        };
        let mut message = format!("{head}0000000000{tail}").into_bytes();
        if self == Size::Big {
            message.resize(64 * 1024 - 3, b'x');
            message.extend_from_slice(br#""]}"#);
        }
        (message, head.len())
    }
}

/// What the client and the measuring thread share.
#[derive(Default)]
struct Shared {
    /// Echoes received and checked.
    received: AtomicU64,
    /// Set when the measurement is over: send nothing more.
    stop: AtomicBool,
}

/// The client's messages (copies of one template, numbered) and the check
/// of their echoes, which come back in order.
struct Traffic {
    template: Vec<u8>,
    slot: usize,
    /// Send no more than this many (`--msgs`), if set.
    limit: Option<u64>,
    sent: u64,
    received: u64,
    shared: Arc<Shared>,
}

impl Traffic {
    /// Whether to send another message.
    fn more(&self) -> bool {
        !self.shared.stop.load(Ordering::Relaxed) && self.limit.is_none_or(|n| self.sent < n)
    }

    /// Whether every message sent has come back and no more will be sent.
    fn done(&self) -> bool {
        self.received == self.sent && !self.more()
    }

    /// The next message.
    fn next(&mut self) -> Bytes {
        let mut message = self.template.clone();
        put_number(&mut message[self.slot..self.slot + 10], self.sent);
        self.sent += 1;
        Bytes::from(message)
    }

    /// Checks an echo against the message it answers.
    fn check(&mut self, body: &[u8]) -> Result<(), String> {
        let (slot, n) = (self.slot, self.received);
        let mut number = [0u8; 10];
        put_number(&mut number, n);
        if body.len() != self.template.len()
            || body[..slot] != self.template[..slot]
            || body[slot..slot + 10] != number
            || body[slot + 10..] != self.template[slot + 10..]
        {
            return Err(format!("echo {n} differs from what was sent"));
        }
        self.received += 1;
        self.shared.received.store(self.received, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes `n` as zero-padded decimal digits into `slot`.
fn put_number(slot: &mut [u8], mut n: u64) {
    for b in slot.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// tokio-tungstenite 0.30, configured as rpc-core configures it.
mod tung {
    use futures::stream::SplitSink;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

    use super::*;

    type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

    /// rpc-core's `ws::config`: 8 KiB read buffer, frames written on flush.
    fn config() -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE))
    }

    /// rpc-core's `SocketDrain`: each queued message fed as a text frame
    /// (checked as UTF-8, as the library does), one flush per batch; a
    /// close frame at the end if `close`.
    async fn writer(
        mut sink: Sink,
        mut queue: UnboundedReceiver<Bytes>,
        close: bool,
    ) -> Result<(), String> {
        let mut batch = Vec::with_capacity(BATCH);
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            for body in batch.drain(..) {
                let text = Utf8Bytes::try_from(body).map_err(err)?;
                sink.feed(Message::Text(text)).await.map_err(err)?;
            }
            sink.flush().await.map_err(err)?;
        }
        if close {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            sink.send(Message::Close(Some(frame))).await.map_err(err)?;
        }
        Ok(())
    }

    /// Echoes every text message until the peer closes.
    pub async fn serve(tcp: TcpStream) -> Result<(), String> {
        let socket = WebSocketStream::from_raw_socket(tcp, Role::Server, Some(config())).await;
        let (sink, mut stream) = socket.split();
        let (queue, rx) = unbounded_channel();
        let writer = tokio::spawn(writer(sink, rx, false));
        while let Some(frame) = stream.next().await {
            match frame.map_err(err)? {
                Message::Text(text) => queue.send(text.into()).map_err(err)?,
                Message::Binary(bytes) => queue.send(bytes).map_err(err)?,
                Message::Close(_) => break,
                // Pings are answered by tungstenite itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        drop(queue);
        // The peer has gone: a failed close reply is no error.
        let _ = writer.await;
        Ok(())
    }

    /// Keeps `in_flight` messages outstanding until told to stop.
    pub async fn client(
        tcp: TcpStream,
        mut traffic: Traffic,
        in_flight: u64,
    ) -> Result<(), String> {
        let socket = WebSocketStream::from_raw_socket(tcp, Role::Client, Some(config())).await;
        let (sink, mut stream) = socket.split();
        let (queue, rx) = unbounded_channel();
        let writer = tokio::spawn(writer(sink, rx, true));
        for _ in 0..in_flight {
            if traffic.more() {
                queue.send(traffic.next()).map_err(err)?;
            }
        }
        while !traffic.done() {
            let frame = stream.next().await.ok_or("the server closed early")?;
            match frame.map_err(err)? {
                Message::Text(text) => {
                    traffic.check(text.as_bytes())?;
                    if traffic.more() {
                        queue.send(traffic.next()).map_err(err)?;
                    }
                }
                Message::Close(_) => return Err("the server closed early".into()),
                _ => {}
            }
        }
        drop(queue);
        writer.await.map_err(err)?
    }
}

/// fastwebsockets 0.10. Its `FragmentCollector` (message semantics) has no
/// `flush` and writes each frame straight to the stream, and one task
/// cannot both wait on a read and write: so, as the library would need,
/// the split halves (feature `unstable-split`): `FragmentCollectorRead`,
/// whose automatic pong and close replies go to the writer through a
/// closure, and `WebSocketWrite` over a `BufWriter` of rpc-core's write
/// buffer size, flushed once per batch.
mod fws {
    use fastwebsockets::{
        FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocket, WebSocketWrite,
    };
    use tokio::io::{BufWriter, ReadHalf, WriteHalf};

    use super::*;

    /// What the writer sends: a message, or a reply the reader owes.
    enum Out {
        Text(Bytes),
        Control(Frame<'static>),
    }

    type Reader = FragmentCollectorRead<ReadHalf<TcpStream>>;
    type Writer = WebSocketWrite<BufWriter<WriteHalf<TcpStream>>>;

    /// The two halves, with the same message limit as tungstenite's.
    fn open(tcp: TcpStream, role: Role) -> (Reader, Writer) {
        let mut socket = WebSocket::after_handshake(tcp, role);
        socket.set_max_message_size(MAX_MESSAGE);
        socket.set_auto_pong(true);
        socket.set_auto_close(true);
        let (read, write) = socket.split(|s| {
            let (r, w) = tokio::io::split(s);
            (r, BufWriter::with_capacity(WRITE_BUFFER, w))
        });
        (FragmentCollectorRead::new(read), write)
    }

    /// The closure `read_frame` hands its automatic replies to.
    fn replies(
        queue: UnboundedSender<Out>,
    ) -> impl FnMut(Frame<'static>) -> std::future::Ready<Result<(), std::io::Error>> {
        move |frame| {
            std::future::ready(
                queue
                    .send(Out::Control(frame))
                    .map_err(|_| std::io::Error::other("the writer has stopped")),
            )
        }
    }

    /// Each queued message written as a text frame (into the `BufWriter`),
    /// one flush per batch; a close frame at the end if `close`.
    async fn writer(
        mut socket: Writer,
        mut queue: UnboundedReceiver<Out>,
        close: bool,
    ) -> Result<(), String> {
        let mut batch = Vec::with_capacity(BATCH);
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            for out in batch.drain(..) {
                match out {
                    Out::Text(body) => {
                        socket
                            .write_frame(Frame::text(Payload::Borrowed(&body)))
                            .await
                    }
                    Out::Control(frame) => socket.write_frame(frame).await,
                }
                .map_err(err)?;
            }
            socket.flush().await.map_err(err)?;
        }
        if close {
            socket
                .write_frame(Frame::close(1000, b""))
                .await
                .map_err(err)?;
            socket.flush().await.map_err(err)?;
        }
        Ok(())
    }

    /// The payload as `Bytes`, without a copy when it is one frame's.
    fn body(payload: Payload<'_>) -> Bytes {
        match payload {
            Payload::Bytes(bytes) => bytes.freeze(),
            other => Bytes::from(Vec::from(other)),
        }
    }

    /// Echoes every text message until the peer closes.
    pub async fn serve(tcp: TcpStream) -> Result<(), String> {
        let (mut read, write) = open(tcp, Role::Server);
        let (queue, rx) = unbounded_channel();
        let writer = tokio::spawn(writer(write, rx, false));
        let mut send = replies(queue.clone());
        loop {
            let frame = read.read_frame(&mut send).await.map_err(err)?;
            match frame.opcode {
                // Text is checked as UTF-8 by fastwebsockets.
                OpCode::Text | OpCode::Binary => {
                    queue.send(Out::Text(body(frame.payload))).map_err(err)?
                }
                OpCode::Close => break,
                _ => {}
            }
        }
        drop((queue, send));
        // The peer has gone: a failed close reply is no error.
        let _ = writer.await;
        Ok(())
    }

    /// Keeps `in_flight` messages outstanding until told to stop.
    pub async fn client(
        tcp: TcpStream,
        mut traffic: Traffic,
        in_flight: u64,
    ) -> Result<(), String> {
        let (mut read, write) = open(tcp, Role::Client);
        let (queue, rx) = unbounded_channel();
        let writer = tokio::spawn(writer(write, rx, true));
        let mut send = replies(queue.clone());
        for _ in 0..in_flight {
            if traffic.more() {
                queue.send(Out::Text(traffic.next())).map_err(err)?;
            }
        }
        while !traffic.done() {
            let frame = read.read_frame(&mut send).await.map_err(err)?;
            match frame.opcode {
                OpCode::Text => {
                    traffic.check(&frame.payload)?;
                    if traffic.more() {
                        queue.send(Out::Text(traffic.next())).map_err(err)?;
                    }
                }
                OpCode::Close => return Err("the server closed early".into()),
                _ => {}
            }
        }
        drop((queue, send));
        writer.await.map_err(err)?
    }
}

/// One measurement's result.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    msgs_per_sec: f64,
    /// CPU µs per message of the server's and the client's thread (NaN
    /// with `--msgs`: the threads have ended before they could be read).
    server_us: f64,
    client_us: f64,
}

/// Runs `work` on a current-thread runtime on this thread, pinned to
/// `cpu`, for at most `limit`.
fn side(
    cpu: usize,
    limit: Duration,
    work: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    pin_current_thread(cpu);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    rt.block_on(async {
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| format!("gave up after {limit:?}"))?
    })
}

/// One connection: a server and a client thread, measured from the
/// measuring thread (after `warmup`, for `secs`), or until `--msgs` echoes.
fn once(krate: Crate, size: Size, args: &WsArgs) -> Result<Outcome, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let addr: SocketAddr = listener.local_addr().map_err(err)?;
    let limit = match args.msgs {
        Some(_) => Duration::from_secs(600),
        None => Duration::from_secs_f64(args.warmup + args.secs + 30.0),
    };
    let shared = Arc::new(Shared::default());
    let (template, slot) = size.template();
    let traffic = Traffic {
        template,
        slot,
        limit: args.msgs,
        sent: 0,
        received: 0,
        shared: shared.clone(),
    };
    let in_flight = args.in_flight;
    let spawn = |name: &str, work: Box<dyn FnOnce() -> Result<(), String> + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(work)
            .map_err(err)
    };
    let server = spawn(
        "bench-server",
        Box::new(move || {
            side(0, limit, async move {
                let listener = TcpListener::from_std(listener).map_err(err)?;
                let (tcp, _) = listener.accept().await.map_err(err)?;
                tcp.set_nodelay(true).map_err(err)?;
                match krate {
                    Crate::Tungstenite => tung::serve(tcp).await,
                    Crate::Fast => fws::serve(tcp).await,
                }
            })
        }),
    )?;
    let start = Instant::now();
    let client = spawn(
        "bench-client",
        Box::new(move || {
            side(1, limit, async move {
                let tcp = TcpStream::connect(addr).await.map_err(err)?;
                tcp.set_nodelay(true).map_err(err)?;
                match krate {
                    Crate::Tungstenite => tung::client(tcp, traffic, in_flight).await,
                    Crate::Fast => fws::client(tcp, traffic, in_flight).await,
                }
            })
        }),
    )?;
    let outcome = if args.msgs.is_some() {
        let result = client.join().map_err(|_| "the client panicked")?;
        let secs = start.elapsed().as_secs_f64();
        result?;
        Outcome {
            msgs_per_sec: shared.received.load(Ordering::Relaxed) as f64 / secs,
            server_us: f64::NAN,
            client_us: f64::NAN,
        }
    } else {
        std::thread::sleep(Duration::from_secs_f64(args.warmup));
        let (cpu0, t0, n0) = (
            cpu::now(),
            Instant::now(),
            shared.received.load(Ordering::Relaxed),
        );
        std::thread::sleep(Duration::from_secs_f64(args.secs));
        let (cpu1, t1, n1) = (
            cpu::now(),
            Instant::now(),
            shared.received.load(Ordering::Relaxed),
        );
        shared.stop.store(true, Ordering::Relaxed);
        client.join().map_err(|_| "the client panicked")??;
        let n = (n1 - n0).max(1) as f64;
        Outcome {
            msgs_per_sec: n / (t1 - t0).as_secs_f64(),
            server_us: (cpu1.server - cpu0.server) * 1e6 / n,
            client_us: (cpu1.client - cpu0.client) * 1e6 / n,
        }
    };
    server.join().map_err(|_| "the server panicked")??;
    Ok(outcome)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `rpc-bench ws-crates`: the rounds, interleaved, then a table of every
/// round and one of the medians. Exits with status 1 if any echo failed.
pub fn run(args: &WsArgs) {
    println!(
        "tokio-tungstenite 0.30 vs fastwebsockets 0.10: one connection, {} in flight, {}; load average at start: {}\n",
        args.in_flight,
        match args.msgs {
            Some(n) => format!("{n} messages per measurement"),
            None => format!("{}s measured after {}s warm-up", args.secs, args.warmup),
        },
        crate::loadavg()
    );
    let mut rows = Vec::new();
    let mut failed = false;
    for round in 1..=args.rounds {
        for &size in &args.sizes {
            for &krate in &args.crates {
                eprint!("round {round}: {} / {} … ", size.name(), krate.name());
                match once(krate, size, args) {
                    Ok(o) => {
                        eprintln!("{:.0} msgs/s", o.msgs_per_sec);
                        rows.push((round, size, krate, o));
                    }
                    Err(e) => {
                        eprintln!("FAILED ({e})");
                        failed = true;
                    }
                }
            }
        }
    }
    println!("| round | size | crate | msgs/s | CPU µs/msg (server+client) |");
    println!("|--:|---|---|--:|--:|");
    for (round, size, krate, o) in &rows {
        println!(
            "| {round} | {} | {} | {:.0} | {:.2}+{:.2} |",
            size.name(),
            krate.name(),
            o.msgs_per_sec,
            o.server_us,
            o.client_us
        );
    }
    println!(
        "\nMedians (load average at the end: {}):\n",
        crate::loadavg()
    );
    println!("| size | crate | msgs/s | CPU µs/msg (server+client) | msgs/s ÷ tokio-tungstenite |");
    println!("|---|---|--:|--:|--:|");
    for &size in &args.sizes {
        let of = |krate: Crate, f: fn(&Outcome) -> f64| {
            median(
                rows.iter()
                    .filter(|r| r.1 == size && r.2 == krate)
                    .map(|r| f(&r.3))
                    .collect(),
            )
        };
        let base = of(Crate::Tungstenite, |o| o.msgs_per_sec);
        for &krate in &args.crates {
            let rate = of(krate, |o| o.msgs_per_sec);
            println!(
                "| {} | {} | {rate:.0} | {:.2}+{:.2} | {:.2}× |",
                size.name(),
                krate.name(),
                of(krate, |o| o.server_us),
                of(krate, |o| o.client_us),
                rate / base
            );
        }
    }
    if failed {
        std::process::exit(1);
    }
}
