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
    this.onNotification = null;
    socket.addEventListener("message", (event) => this.#receive(event.data));
    socket.addEventListener("close", () => {
      for (const { reject, timer } of this.pending.values()) {
        clearTimeout(timer);
        reject(new Error("the connection to the server closed"));
      }
      this.pending.clear();
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
    for (const one of Array.isArray(message) ? message : [message]) {
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
