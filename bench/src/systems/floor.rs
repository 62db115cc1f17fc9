//! The floor: benchmark code, not a product. A client and a server that
//! speak the library's wire format (4-byte big-endian length, one JSON-RPC
//! 2.0 body; PROTOCOL.md, Framing) with no general JSON parser and nothing
//! else, to show the ceiling that this wire format allows on this machine.
//! Every other system's throughput is reported as a ratio to it.
//!
//! What it does, and all it does:
//! - requests and responses are scanned by hand for the two benchmark
//!   methods, `add(i64, i64)` and `echo(string)`, in the compact layout
//!   that this client and the library's client write
//!   (`{"jsonrpc":"2.0","method":M,"params":[..],"id":ID...}`); anything
//!   else gets an error response (`-32600` with `"id": null`, or `-32601`
//!   for another method), never a panic;
//! - the server answers on the connection's one task, inline, with no task
//!   per call, and sends every response made from one read in one write;
//! - the client keeps every request that is ready in one buffer, which its
//!   writer sends in one write (after letting the ready callers append, as
//!   the library's writer does), and routes responses by id with a slab
//!   index instead of a hash map;
//! - `echo` strings: the server copies the string token from the request
//!   into the response as it is (checking that it is UTF-8 and finding its
//!   end, which are all a correct echo must do); the client escapes what it
//!   sends and unescapes what it receives by hand, with a plain copy for a
//!   string that needs no escaping (the benchmark's never does).
//!
//! What it leaves out, on purpose: deadlines, cancellation, notifications
//! from the server, batches, a bound on the calls in flight, graceful
//! shutdown, HTTP and WebSocket, and streams (so it has no `stream` row). A
//! frame header above 16 MiB closes the connection. The server writes each
//! read's responses before reading again: a peer that writes without ever
//! reading could stall its own connection (every client here reads).

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};

use super::{Connection, RunningServer, listen, tcp_connect};
use crate::counting::{CountingIo, WriteCounter};

/// The largest frame body either side accepts (the library's default).
const MAX_FRAME: usize = 16 << 20;

/// Bytes asked of each read when no partial frame says how many are due.
const READ_CHUNK: usize = 8 << 10;

// ---------------------------------------------------------------- scanning

/// The position just past the first `needle` in `hay`, from `from`.
fn after(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| from + i + needle.len())
}

/// The end (exclusive, past the closing quote) of the JSON string whose
/// opening quote is at `start`, and whether it holds any escape.
fn string_end(body: &[u8], start: usize) -> Option<(usize, bool)> {
    if body.get(start) != Some(&b'"') {
        return None;
    }
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        i += memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[i] == b'"' {
            return Some((i + 1, escaped));
        }
        escaped = true;
        i += 2; // the backslash and the byte it escapes
    }
}

/// An integer at `start`: its value and the position after it.
fn int_at(body: &[u8], start: usize) -> Option<(i64, usize)> {
    let (negative, mut i) = match body.get(start)? {
        b'-' => (true, start + 1),
        _ => (false, start),
    };
    let first = i;
    let mut value: i64 = 0;
    while let Some(&d) = body.get(i).filter(|d| d.is_ascii_digit()) {
        let d = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
        i += 1;
    }
    (i > first).then_some((value, i))
}

/// The end of the JSON value at `start` that an id can be: a string, or a
/// number or `null` (up to the next `,`, `}` or whitespace).
fn id_end(body: &[u8], start: usize) -> Option<usize> {
    match body.get(start)? {
        b'"' => string_end(body, start).map(|(end, _)| end),
        _ => {
            let rest = body.get(start..)?;
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b' ' | b'\n' | b'\r' | b'\t'))?;
            (len > 0).then_some(start + len)
        }
    }
}

/// Whether `bytes` hold no `"`, `\\` or control character: 64-byte chunks
/// folded without branches (which the compiler vectorises), so a long clean
/// string is checked at memory speed rather than a byte per step.
fn needs_no_escape(bytes: &[u8]) -> bool {
    bytes.chunks(64).all(|chunk| {
        !chunk.iter().fold(false, |bad, &b| {
            bad | (b == b'"') | (b == b'\\') | (b < 0x20)
        })
    })
}

/// Appends `s` as a JSON string: a plain copy when nothing needs escaping.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if needs_no_escape(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
    } else {
        for b in s.bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if b < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                b => out.push(b),
            }
        }
    }
    out.push(b'"');
}

/// The text of the JSON string token `token` (quotes included), unescaped.
fn unescape(token: &[u8], escaped: bool) -> Result<String, String> {
    let inner = &token[1..token.len() - 1];
    let text = std::str::from_utf8(inner).map_err(|e| format!("result is not UTF-8: {e}"))?;
    if !escaped {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let bad = || format!("bad escape in the result string {text:?}");
    let hex4 = |chars: &mut std::str::Chars<'_>| -> Option<u32> {
        let digits: String = chars.take(4).collect();
        (digits.len() == 4).then_some(())?;
        u32::from_str_radix(&digits, 16).ok()
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next().ok_or_else(bad)? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hi = hex4(&mut chars).ok_or_else(bad)?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if (chars.next(), chars.next()) != (Some('\\'), Some('u')) {
                        return Err(bad());
                    }
                    let lo = hex4(&mut chars)
                        .filter(|lo| (0xDC00..0xE000).contains(lo))
                        .ok_or_else(bad)?;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or_else(bad)?
            }
            _ => return Err(bad()),
        };
        out.push(decoded);
    }
    Ok(out)
}

/// Starts a frame in `out`; [`end_frame`] fills in its length.
fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

fn end_frame(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The next complete frame's body in `buf` from `pos`: `Ok(None)` when it
/// has not all arrived, `Err` for a header above [`MAX_FRAME`].
fn frame_at(buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, usize> {
    let Some(header) = buf.get(pos..pos + 4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(len);
    }
    let start = pos + 4;
    Ok((buf.len() >= start + len).then_some((start, start + len)))
}

// ------------------------------------------------------------------ server

/// Starts the floor's server on a free loopback port, on the current
/// runtime; its writes are counted.
pub async fn start_server() -> RunningServer {
    let listener = listen().await;
    let addr = listener.local_addr().expect("local addr");
    let writes = WriteCounter::default();
    let accept = tokio::spawn({
        let writes = writes.clone();
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, writes.clone()));
            }
        }
    });
    RunningServer::new(addr, Some(writes), move || accept.abort())
}

/// One connection: read, answer every complete frame inline, write all the
/// answers in one write, repeat.
async fn serve(mut stream: tokio::net::TcpStream, writes: WriteCounter) {
    let (mut read, write) = stream.split();
    let mut write = CountingIo::new(write, writes);
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        // Room for what the partial frame still needs, or a chunk.
        let due = match frame_at(&input, 0) {
            Err(_) => return,
            Ok(_) if input.len() >= 4 => {
                let len = u32::from_be_bytes(input[..4].try_into().expect("4 bytes")) as usize;
                (4 + len).saturating_sub(input.len()).max(READ_CHUNK)
            }
            Ok(_) => READ_CHUNK,
        };
        input.reserve(due);
        match read.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut pos = 0;
        loop {
            match frame_at(&input, pos) {
                Ok(Some((start, end))) => {
                    answer(&input[start..end], &mut out);
                    pos = end;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        input.drain(..pos);
        if !out.is_empty() {
            if write.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

/// Appends the response to one request body (nothing for a notification).
fn answer(body: &[u8], out: &mut Vec<u8>) {
    let Some(request) = scan_request(body) else {
        let at = begin_frame(out);
        out.extend_from_slice(
            br#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"the floor system reads only compact add and echo requests"},"id":null}"#,
        );
        end_frame(out, at);
        return;
    };
    let Some(id) = request.id else {
        return;
    };
    let at = begin_frame(out);
    match request.call {
        Scanned::Add(a, b) => {
            out.extend_from_slice(br#"{"jsonrpc":"2.0","result":"#);
            out.extend_from_slice(itoa::Buffer::new().format(a.wrapping_add(b)).as_bytes());
        }
        Scanned::Echo(token) => {
            out.reserve(token.len() + 64);
            out.extend_from_slice(br#"{"jsonrpc":"2.0","result":"#);
            out.extend_from_slice(token);
        }
        Scanned::Other(method) => {
            out.extend_from_slice(
                br#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"no method "#,
            );
            out.extend_from_slice(&method[1..method.len() - 1]);
            out.extend_from_slice(br#""}"#);
        }
    }
    out.extend_from_slice(br#","id":"#);
    out.extend_from_slice(id);
    out.push(b'}');
    end_frame(out, at);
}

/// What a request asks for.
enum Scanned<'a> {
    Add(i64, i64),
    /// The argument's string token, quotes included, checked to be UTF-8.
    Echo(&'a [u8]),
    /// Another method: its name's string token.
    Other(&'a [u8]),
}

struct Request<'a> {
    call: Scanned<'a>,
    /// The id's JSON text, to be copied into the response byte for byte;
    /// `None` for a notification.
    id: Option<&'a [u8]>,
}

/// Reads `{"jsonrpc":"2.0","method":M,"params":[..],"id":ID...}`.
fn scan_request(body: &[u8]) -> Option<Request<'_>> {
    let rest = body.strip_prefix(br#"{"jsonrpc":"2.0","method":"#)?;
    (body.last() == Some(&b'}')).then_some(())?;
    let method_at = body.len() - rest.len();
    let (method_end, _) = string_end(body, method_at)?;
    let method = &body[method_at..method_end];
    std::str::from_utf8(method).ok()?;
    let params_at = method_end + br#","params":["#.len();
    if body.get(method_end..params_at)? != br#","params":["# {
        return None;
    }
    let (call, params_end) = match method {
        br#""add""# => {
            let (a, i) = int_at(body, params_at)?;
            (*body.get(i)? == b',').then_some(())?;
            let (b, i) = int_at(body, i + 1)?;
            (Scanned::Add(a, b), i)
        }
        br#""echo""# => {
            let (end, _) = string_end(body, params_at)?;
            let token = &body[params_at..end];
            std::str::from_utf8(token).ok()?;
            (Scanned::Echo(token), end)
        }
        _ => {
            let end = memchr::memchr(b']', &body[params_at..])? + params_at;
            (Scanned::Other(method), end)
        }
    };
    if let Scanned::Other(_) = call {
    } else if *body.get(params_end)? != b']' {
        return None;
    }
    // The id comes after the params (where no string can hide it).
    let id = match after(body, params_end, br#""id":"#) {
        Some(at) => Some(&body[at..id_end(body, at)?]),
        None => None,
    };
    Some(Request { call, id })
}

// ------------------------------------------------------------------ client

/// A client: clones share the connection.
#[derive(Clone)]
pub struct Client(Arc<Handle>);

/// Ends the connection's tasks when the last clone goes.
struct Handle {
    shared: Arc<Shared>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for Handle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer when the first request lands in an empty buffer.
    ready: Notify,
}

type Waiter = oneshot::Sender<Bytes>;

struct State {
    /// Framed requests waiting for the writer.
    out: Vec<u8>,
    /// Callers waiting for their response, indexed by request id.
    waiters: Vec<Option<Waiter>>,
    /// Free indices of `waiters`.
    free: Vec<usize>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

/// Connects a floor client to `addr` (TCP_NODELAY set), spawning its reader
/// and writer tasks on the current runtime; `Err` if the connection fails.
pub async fn connect(addr: SocketAddr) -> Result<Connection, String> {
    let stream = tcp_connect(addr).await?;
    let fd = stream.as_raw_fd();
    let (read, write) = stream.into_split();
    let writes = WriteCounter::default();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            out: Vec::with_capacity(READ_CHUNK),
            waiters: Vec::new(),
            free: Vec::new(),
            closed: None,
        }),
        ready: Notify::new(),
    });
    let writer = tokio::spawn(write_loop(
        CountingIo::new(write, writes.clone()),
        shared.clone(),
    ));
    let reader = tokio::spawn(read_loop(read, shared.clone()));
    Ok(Connection {
        client: super::Client::Floor(Client(Arc::new(Handle {
            shared,
            tasks: [writer.abort_handle(), reader.abort_handle()],
        }))),
        writes: Some(writes),
        fd: Some(fd),
    })
}

/// Returns `Pending` once after waking itself: Tokio then queues the task
/// behind every task that is ready now, so those append their requests
/// before the writer takes the buffer.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn close(shared: &Shared, why: String) {
    let mut state = shared.state.lock().expect("floor client state");
    state.closed.get_or_insert(why);
    state.waiters.clear();
    state.free.clear();
}

async fn write_loop<W: AsyncWrite + Unpin>(mut write: W, shared: Arc<Shared>) {
    let mut sending = Vec::with_capacity(READ_CHUNK);
    loop {
        shared.ready.notified().await;
        YieldOnce(false).await;
        {
            let mut state = shared.state.lock().expect("floor client state");
            std::mem::swap(&mut state.out, &mut sending);
        }
        if let Err(e) = write.write_all(&sending).await {
            close(&shared, format!("write: {e}"));
            return;
        }
        sending.clear();
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut read: R, shared: Arc<Shared>) {
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut bodies: Vec<(usize, Bytes)> = Vec::new();
    let mut ready: Vec<(Waiter, Bytes)> = Vec::new();
    let why = loop {
        match read.read_buf(&mut input).await {
            Ok(0) => break "the server closed the connection".to_owned(),
            Err(e) => break format!("read: {e}"),
            Ok(_) => {}
        }
        let mut bad = None;
        while input.len() >= 4 {
            let len = u32::from_be_bytes(input[..4].try_into().expect("4 bytes")) as usize;
            if len > MAX_FRAME {
                bad = Some(format!("a frame of {len} bytes is above {MAX_FRAME}"));
                break;
            }
            if input.len() < 4 + len {
                input.reserve(4 + len - input.len());
                break;
            }
            input.advance(4);
            let body = input.split_to(len).freeze();
            match response_id(&body) {
                Some(id) => bodies.push((id, body)),
                None => {
                    bad = Some(format!(
                        "a response without a numeric id: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                    break;
                }
            }
        }
        {
            let mut state = shared.state.lock().expect("floor client state");
            for (id, body) in bodies.drain(..) {
                if let Some(waiter) = state.waiters.get_mut(id).and_then(Option::take) {
                    state.free.push(id);
                    ready.push((waiter, body));
                }
            }
        }
        for (waiter, body) in ready.drain(..) {
            let _ = waiter.send(body);
        }
        if let Some(why) = bad {
            break why;
        }
        if input.capacity() - input.len() < 64 {
            input.reserve(READ_CHUNK);
        }
    };
    close(&shared, why);
}

/// The id of a response `{...,"id":N}`: the last member, as both this
/// server and the library's write it.
fn response_id(body: &[u8]) -> Option<usize> {
    let at = memchr::memmem::rfind(body, br#","id":"#)? + br#","id":"#.len();
    let digits = body.get(at..body.len() - 1)?;
    (body.last() == Some(&b'}') && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(digits).ok()?.parse().ok())?
}

/// The `result` member's text of a response body, or the error it carries.
fn result_of(body: &[u8]) -> Result<&[u8], String> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let Some(rest) = body.strip_prefix(br#"{"jsonrpc":"2.0","result":"#) else {
        return Err(format!("error response: {}", text()));
    };
    let at = body.len() - rest.len();
    let end = memchr::memmem::rfind(body, br#","id":"#).filter(|&end| end >= at);
    end.map(|end| &body[at..end])
        .ok_or_else(|| format!("a response without a result: {}", text()))
}

impl Client {
    /// Sends one framed request (params written by `params`) and waits for
    /// its response body.
    async fn call(&self, method: &str, params: impl FnOnce(&mut Vec<u8>)) -> Result<Bytes, String> {
        let shared = &*self.0.shared;
        let (tx, rx) = oneshot::channel();
        let wake = {
            let mut state = shared.state.lock().expect("floor client state");
            if let Some(why) = &state.closed {
                return Err(why.clone());
            }
            let id = match state.free.pop() {
                Some(id) => {
                    state.waiters[id] = Some(tx);
                    id
                }
                None => {
                    state.waiters.push(Some(tx));
                    state.waiters.len() - 1
                }
            };
            let out = &mut state.out;
            let was_empty = out.is_empty();
            let at = begin_frame(out);
            out.extend_from_slice(br#"{"jsonrpc":"2.0","method":""#);
            out.extend_from_slice(method.as_bytes());
            out.extend_from_slice(br#"","params":["#);
            params(out);
            out.extend_from_slice(br#"],"id":"#);
            out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
            out.push(b'}');
            end_frame(out, at);
            was_empty
        };
        if wake {
            shared.ready.notify_one();
        }
        rx.await.map_err(|_| {
            let state = shared.state.lock().expect("floor client state");
            state
                .closed
                .clone()
                .unwrap_or_else(|| "connection closed".to_owned())
        })
    }

    /// `add(a, b)`; `Err` for an error response, a result that is not an
    /// `i64`, or a closed connection.
    pub async fn add(&self, a: i64, b: i64) -> Result<i64, String> {
        let body = self
            .call("add", |out| {
                let mut digits = itoa::Buffer::new();
                out.extend_from_slice(digits.format(a).as_bytes());
                out.push(b',');
                out.extend_from_slice(digits.format(b).as_bytes());
            })
            .await?;
        let result = result_of(&body)?;
        match int_at(result, 0) {
            Some((sum, end)) if end == result.len() => Ok(sum),
            _ => Err(format!(
                "add answered {}, not an i64",
                String::from_utf8_lossy(result)
            )),
        }
    }

    /// `echo(s)`; `Err` for an error response, a result that is not a
    /// string, or a closed connection.
    pub async fn echo(&self, s: String) -> Result<String, String> {
        let body = self
            .call("echo", |out| {
                out.reserve(s.len() + 64);
                write_json_string(out, &s);
            })
            .await?;
        let result = result_of(&body)?;
        match string_end(result, 0) {
            Some((end, escaped)) if end == result.len() => unescape(result, escaped),
            _ => Err("echo answered something other than a string".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::systems::{self, System};

    /// Bounds every wait: a hang is a failure, not a stuck test.
    async fn within<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("answered within 10 s")
    }

    fn responses(request: &[u8]) -> String {
        let mut out = Vec::new();
        answer(request, &mut out);
        if out.is_empty() {
            return String::new();
        }
        assert_eq!(
            u32::from_be_bytes(out[..4].try_into().unwrap()) as usize,
            out.len() - 4,
            "one frame, its length right"
        );
        String::from_utf8(out[4..].to_vec()).unwrap()
    }

    #[test]
    fn the_server_scans_the_requests_of_both_clients() {
        // This floor client's layout, and the library client's (with a
        // member after the id).
        assert_eq!(
            responses(br#"{"jsonrpc":"2.0","method":"add","params":[2,-5],"id":7}"#),
            r#"{"jsonrpc":"2.0","result":-3,"id":7}"#
        );
        assert_eq!(
            responses(
                br#"{"jsonrpc":"2.0","method":"add","params":[9223372036854775807,1],"id":"x\"y","timeout_ms":30000}"#
            ),
            r#"{"jsonrpc":"2.0","result":-9223372036854775808,"id":"x\"y"}"#
        );
        assert_eq!(
            responses(
                r#"{"jsonrpc":"2.0","method":"echo","params":["a\"]\\ é"],"id":1}"#.as_bytes()
            ),
            r#"{"jsonrpc":"2.0","result":"a\"]\\ é","id":1}"#
        );
        // A notification gets nothing; another method -32601; anything else
        // -32600 with a null id.
        assert_eq!(
            responses(br#"{"jsonrpc":"2.0","method":"add","params":[1,2]}"#),
            ""
        );
        assert!(
            responses(br#"{"jsonrpc":"2.0","method":"mul","params":[1,2],"id":3}"#)
                .contains(r#""code":-32601,"message":"no method mul"}"#)
        );
        for bad in [
            &br#"{"method":"add","params":[1,2],"id":1}"#[..],
            br#"{"jsonrpc":"2.0","method":"add","params":[1],"id":1}"#,
            br#"{"jsonrpc":"2.0","method":"add","params":[1,99999999999999999999],"id":1}"#,
            br#"{"jsonrpc":"2.0","method":"echo","params":["unterminated],"id":1}"#,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\",\"params\":[],\"id\":1}",
            br#"{"jsonrpc":"2.0","method":"echo","params":["ok"]"#,
            b"",
        ] {
            assert!(
                responses(bad).contains(r#""code":-32600"#)
                    && responses(bad).ends_with(r#""id":null}"#),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn strings_round_trip_through_escaping() {
        let late_quote = format!("{}\"{}", "a".repeat(130), "b".repeat(10));
        for s in [
            "plain",
            "quote \" backslash \\ newline \n tab \t bell \u{7}",
            "olá 😀",
            // Past the first 64-byte chunk.
            &late_quote,
        ] {
            let mut token = Vec::new();
            write_json_string(&mut token, s);
            assert_eq!(
                serde_json::from_slice::<String>(&token).unwrap(),
                s,
                "what serde_json reads back"
            );
            let (end, escaped) = string_end(&token, 0).unwrap();
            assert_eq!(end, token.len());
            assert_eq!(unescape(&token, escaped).unwrap(), s);
        }
        // serde_json's own escapes, surrogate pairs included.
        let token = serde_json::to_vec("\u{1}\u{1F600}/").unwrap();
        assert_eq!(unescape(&token, true).unwrap(), "\u{1}\u{1F600}/");
        assert_eq!(
            unescape(br#""\ud83d\ude00\/""#, true).unwrap(),
            "\u{1F600}/"
        );
        assert!(unescape(br#""\ud83d""#, true).is_err());
        assert!(unescape(br#""\x""#, true).is_err());
    }

    /// The floor speaks the library's wire format: each side works with
    /// the library's other side, and with itself.
    #[tokio::test]
    async fn it_interoperates_with_the_library() {
        let payload = "abc \"quoted\" \\ \n é".repeat(1000);
        for (server, client) in [
            (System::Floor, System::Floor),
            (System::Floor, System::Rpc),
            (System::Rpc, System::Floor),
        ] {
            let running = systems::start_server(server).await;
            let conn = within(systems::connect(client, running.addr))
                .await
                .unwrap();
            let calls = (0..100i64).map(|i| conn.client.add(i, i * 1000));
            let sums = within(futures::future::join_all(calls)).await;
            for (i, sum) in sums.into_iter().enumerate() {
                let i = i as i64;
                assert_eq!(sum.unwrap(), i + i * 1000, "{server:?} ← {client:?}");
            }
            let echoed = within(conn.client.echo(payload.clone())).await.unwrap();
            assert_eq!(echoed, payload, "{server:?} ← {client:?}");
            running.stop();
        }
    }

    /// A client whose server goes away gets an error, not a hang.
    #[tokio::test]
    async fn a_closed_connection_fails_the_calls() {
        let listener = listen().await;
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
        });
        let conn = within(connect(addr)).await.unwrap();
        within(accept).await.unwrap();
        let error = within(conn.client.add(1, 2)).await.unwrap_err();
        assert!(
            error.contains("closed") || error.contains("read") || error.contains("write"),
            "{error}"
        );
    }
}
