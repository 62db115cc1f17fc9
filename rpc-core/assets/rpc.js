// rpc.js: a JSON-RPC 2.0 client for the browser, over WebSocket, served by
// every rpc-core server at /rpc.js. An ES module with no build step:
//
//   import { Client } from "/rpc.js";
//   const rpc = await Client.connect();            // ws(s)://this-host/ws
//   const sum = await rpc.call("add", [2, 3]);      // 5
//   try { await rpc.call("div", [1, 0]); }
//   catch (e) { e.code; e.message; e.data; }       // 1000, "division by zero", "DivisionByZero"
//
// Many calls can be in flight at once; each resolves with its own result.
// See PROTOCOL.md, "WebSocket", for the messages.
//
// Streams (PROTOCOL.md, "Streams"): `stream` resolves, once the server has
// opened the stream, with an async iterable of its items:
//
//   const events = await rpc.stream("chat.join", ["geral", "ana"]);
//   for await (const event of events) { ... }       // each item, in order
//
//   - `rpc.stream(method, params, { window, idleTimeoutMs, timeout })`:
//     `window` is the stream's credit in bytes (default 262144);
//     `idleTimeoutMs` ends the iteration with an error when no item comes
//     for that long while it waits; `timeout` bounds the opening only.
//   - The opening's refusal rejects the promise (`code`, `message`, `data`,
//     as for `call`).
//   - The loop ends when the server ends the stream. An end with an error
//     throws an `RpcError` from the loop (`code`, `message`, `data`); the
//     connection closing throws a plain `Error`. Either comes after the
//     items already received.
//   - Leaving the loop early (`break`, `return`, an exception; or calling
//     `events.return()` / `events.close()`) sends `rpc.unsubscribe`: the
//     server stops producing.
//   - Credit is granted as the loop takes items, not as they arrive: a page
//     that stops iterating stops the server once the window is used.

/** An error answered by the server: `code`, `message` and `data` of the
 *  JSON-RPC error object (PROTOCOL.md, "Errors"). */
export class RpcError extends Error {
  constructor(error) {
    super(error.message);
    this.name = "RpcError";
    this.code = error.code;
    this.data = error.data;
  }
}

/** The window of a stream opened without one: 256 KiB. */
export const DEFAULT_WINDOW = 262144;

// The hooks by which a `Client` feeds its streams (not part of the API).
const ITEM = Symbol("item");
const END = Symbol("end");
const FAIL = Symbol("fail");

/** The number of bytes of `text` in UTF-8. */
function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4; // a surrogate pair: one code point of 4 bytes
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** The credit an item costs: the bytes of its `value` as the server sent
 *  it (PROTOCOL.md, "Streams"). `JSON.parse` loses the raw text, so it is
 *  measured on the message: an rpc-core server sends every item on its own,
 *  as exactly `{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":N,
 *  "value":V}}`, so V's bytes are the message's bytes less that ASCII
 *  envelope. For a message in another shape (another server, a batch) it
 *  falls back to re-serializing the value, which matches serde_json's
 *  compact output except for number formatting (`1.0` becomes `1`) and may
 *  then count a few bytes short; `exact` says which it was. */
function itemBytes(text, stream, value) {
  if (text !== undefined) {
    const envelope = `{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":${stream},"value":`;
    if (text.startsWith(envelope) && text.endsWith("}}")) {
      return { bytes: utf8Length(text) - envelope.length - 2, exact: true };
    }
  }
  return { bytes: utf8Length(JSON.stringify(value) ?? "null"), exact: false };
}

/** The items of a stream the server sends this client: an async iterable
 *  (and its own iterator), from `Client.stream`. */
export class RemoteStream {
  #client;
  #method;
  #window;
  #idleTimeoutMs;
  #idleTimer;
  /** Items received and not yet taken: `{ value, bytes }`. */
  #queue = [];
  /** `next()` calls waiting for an item: `{ resolve, reject }`. */
  #waiters = [];
  /** Bytes received and not yet taken. */
  #buffered = 0;
  /** Bytes taken and not yet granted back. */
  #unacknowledged = 0;
  /** Whether the stream is over here: ended, failed or unsubscribed. */
  #done = false;
  /** The error to throw once the queued items are taken. */
  #failure = null;

  constructor(client, id, method, window, idleTimeoutMs) {
    this.#client = client;
    /** The stream's id on its connection, as the server named it. */
    this.id = id;
    this.#method = method;
    this.#window = window;
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** The next item: `{ value, done: false }`, or `{ done: true }` once the
   *  stream has ended; rejects if it failed. */
  next() {
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#settle();
    });
  }

  /** Stops the stream here and, unless it has ended, tells the server
   *  (`rpc.unsubscribe`). What `for await` calls on leaving the loop. */
  return(value) {
    this.close();
    return Promise.resolve({ value, done: true });
  }

  /** The same as `return()`. */
  close() {
    if (!this.#done) {
      this.#done = true;
      this.#client.unsubscribe(this.id);
    }
    this.#failure = null;
    this.#queue = [];
    this.#buffered = 0;
    this.#settle();
  }

  /** An item arrived. */
  [ITEM](value, bytes, exact) {
    if (this.#done) return;
    // A server that sends more than the credit allows (one item larger
    // than the window may come when nothing is outstanding) breaks the
    // protocol; only checked when the count is exact.
    const outstanding = this.#buffered + this.#unacknowledged;
    if (exact && outstanding > 0 && outstanding + bytes > this.#window) {
      this.#client.unsubscribe(this.id);
      this[FAIL](new Error(`the server sent more than the credit of ${this.#method}'s stream`));
      return;
    }
    this.#buffered += bytes;
    this.#queue.push({ value, bytes });
    this.#settle();
  }

  /** The server ended the stream, with an error object or none. */
  [END](error) {
    if (this.#done) return;
    this.#done = true;
    if (error) this.#failure = new RpcError(error);
    this.#settle();
  }

  /** The stream failed here (the connection closed, an idle timeout). */
  [FAIL](error) {
    if (this.#done) return;
    this.#done = true;
    this.#failure = error;
    this.#client.streams.delete(this.id);
    this.#settle();
  }

  /** Answers the waiting `next()` calls from what has arrived. */
  #settle() {
    while (this.#waiters.length > 0) {
      if (this.#queue.length > 0) {
        const { value, bytes } = this.#queue.shift();
        this.#taken(bytes);
        this.#waiters.shift().resolve({ value, done: false });
      } else if (this.#done) {
        const waiter = this.#waiters.shift();
        if (this.#failure) {
          const failure = this.#failure;
          this.#failure = null;
          waiter.reject(failure);
        } else waiter.resolve({ value: undefined, done: true });
      } else break;
    }
    const waiting = this.#waiters.length > 0;
    // Everything received has been read and the reader waits for more:
    // grant what it read, even under half the window, or an item larger
    // than the credit left would wait for a grant that waits for it.
    if (waiting && !this.#done && this.#queue.length === 0 && this.#unacknowledged > 0) {
      this.#client.notify("rpc.credit", { stream: this.id, bytes: this.#unacknowledged });
      this.#unacknowledged = 0;
    }
    if (!waiting || this.#done) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    } else if (this.#idleTimeoutMs !== undefined && this.#idleTimer === undefined) {
      this.#idleTimer = setTimeout(() => {
        this.#idleTimer = undefined;
        this.#client.unsubscribe(this.id);
        this[FAIL](new Error(`no item from ${this.#method} within ${this.#idleTimeoutMs} ms`));
      }, this.#idleTimeoutMs);
    }
  }

  /** The application took an item of `bytes`: grant them back each time
   *  what was taken reaches half the window (and, in `#settle`, whenever
   *  the reader waits with nothing left), as the Rust client does. */
  #taken(bytes) {
    this.#buffered -= bytes;
    if (this.#done) return; // credit for an ended stream is ignored
    this.#unacknowledged += bytes;
    if (this.#unacknowledged >= Math.max(Math.floor(this.#window / 2), 1)) {
      this.#client.notify("rpc.credit", { stream: this.id, bytes: this.#unacknowledged });
      this.#unacknowledged = 0;
    }
  }
}

/** The WebSocket URL of the server that served this page. */
export function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class Client {
  /** Opens a connection; resolves once it is open. */
  static connect(url = defaultUrl()) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.addEventListener("open", () => resolve(new Client(socket)), { once: true });
      socket.addEventListener("error", () => reject(new Error(`could not connect to ${url}`)), { once: true });
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.nextId = 1;
    this.pending = new Map();
    /** Open streams by id. */
    this.streams = new Map();
    this.onNotification = null;
    socket.addEventListener("message", (event) => this.#receive(event.data));
    socket.addEventListener("close", () => {
      for (const { reject, timer } of this.pending.values()) {
        clearTimeout(timer);
        reject(new Error("the connection to the server closed"));
      }
      this.pending.clear();
      for (const stream of [...this.streams.values()]) {
        stream[FAIL](new Error("the connection to the server closed"));
      }
      this.streams.clear();
    });
  }

  /** Calls `method` with `params` (an array, or an object by name). With
   *  `{ timeout: ms }` the server stops working on it when the time runs
   *  out, and the promise rejects. */
  call(method, params = [], { timeout } = {}) {
    const id = this.nextId++;
    const request = { jsonrpc: "2.0", method, params, id };
    if (timeout !== undefined) request.timeout_ms = Math.ceil(timeout);
    return new Promise((resolve, reject) => {
      const timer = timeout === undefined ? undefined : setTimeout(() => {
        if (this.pending.delete(id)) {
          this.notify("rpc.cancel", { id });
          reject(new Error(`no answer to ${method} within ${timeout} ms`));
        }
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.send(JSON.stringify(request));
    });
  }

  /** Calls streaming method `method` and resolves, once the server has
   *  opened the stream, with a `RemoteStream`: `for await (const item of
   *  await rpc.stream(method, params)) { ... }`. Options: `window` (the
   *  credit in bytes, default 262144), `idleTimeoutMs` (fail when no item
   *  comes for that long while the loop waits), `timeout` (for the
   *  opening). */
  stream(method, params = [], { window, idleTimeoutMs, timeout } = {}) {
    if (window !== undefined && !(Number.isSafeInteger(window) && window >= 0)) {
      return Promise.reject(new RangeError("a stream's window is a whole number of bytes"));
    }
    if (this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("the connection to the server is closed"));
    }
    const id = this.nextId++;
    const request = { jsonrpc: "2.0", method, params, id };
    if (timeout !== undefined) request.timeout_ms = Math.ceil(timeout);
    if (window !== undefined && window !== DEFAULT_WINDOW) request.credit = window;
    return new Promise((resolve, reject) => {
      const timer = timeout === undefined ? undefined : setTimeout(() => {
        if (!this.pending.has(id)) return;
        // Should it open after all, close it at once.
        this.pending.set(id, {
          resolve: (result) => {
            if (Number.isSafeInteger(result?.stream)) this.unsubscribe(result.stream);
          },
          reject: () => {},
        });
        this.notify("rpc.cancel", { id });
        reject(new Error(`${method} did not open within ${timeout} ms`));
      }, timeout);
      this.pending.set(id, {
        // Called from the message handler itself: the stream is registered
        // before any later message (its first items) is handled.
        resolve: (result) => {
          const stream = result?.stream;
          if (!Number.isSafeInteger(stream)) {
            reject(new Error(`${method} did not open a stream; is it a streaming method?`));
            return;
          }
          const opened = new RemoteStream(this, stream, method, window ?? DEFAULT_WINDOW, idleTimeoutMs);
          this.streams.set(stream, opened);
          resolve(opened);
        },
        reject,
        timer,
      });
      this.socket.send(JSON.stringify(request));
    });
  }

  /** Ends stream `stream` on the server (`rpc.unsubscribe`, as a
   *  notification); its items still on their way are ignored.
   *  `RemoteStream.close()` calls this. */
  unsubscribe(stream) {
    if (!this.streams.delete(stream)) return;
    if (this.socket.readyState === WebSocket.OPEN) this.notify("rpc.unsubscribe", { stream });
  }

  /** Sends a notification: no answer. */
  notify(method, params = []) {
    this.socket.send(JSON.stringify({ jsonrpc: "2.0", method, params }));
  }

  /** Collects calls to send as one batch: `const b = rpc.batch();
   *  const x = b.call("add", [1, 2]); await b.send(); await x;` */
  batch() {
    const members = [];
    const client = this;
    return {
      call(method, params = []) {
        const id = client.nextId++;
        members.push({ jsonrpc: "2.0", method, params, id });
        return new Promise((resolve, reject) => client.pending.set(id, { resolve, reject }));
      },
      notify(method, params = []) {
        members.push({ jsonrpc: "2.0", method, params });
      },
      send() {
        if (members.length > 0) client.socket.send(JSON.stringify(members));
        return Promise.resolve();
      },
    };
  }

  close() {
    this.socket.close();
  }

  #receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const single = !Array.isArray(message);
    for (const one of single ? [message] : message) {
      if (one.method === "rpc.item" || one.method === "rpc.end") {
        const stream = this.streams.get(one.params?.stream);
        // Items of a stream this side left are ignored.
        if (!stream) continue;
        if (one.method === "rpc.item") {
          const { bytes, exact } = itemBytes(single ? text : undefined, stream.id, one.params.value);
          stream[ITEM](one.params.value, bytes, exact);
        } else {
          this.streams.delete(stream.id);
          stream[END](one.params.error);
        }
        continue;
      }
      if (one.method !== undefined) {
        if (this.onNotification) this.onNotification(one);
        continue;
      }
      const waiting = this.pending.get(one.id);
      if (!waiting) continue;
      this.pending.delete(one.id);
      clearTimeout(waiting.timer);
      if (one.error) waiting.reject(new RpcError(one.error));
      else waiting.resolve(one.result);
    }
  }
}
