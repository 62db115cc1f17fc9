#!/usr/bin/env python3
"""A client for the demo server written from the wire protocol alone.

Protocol: JSON-RPC 2.0 over TCP. Every message is a frame: a 4-byte
big-endian unsigned length N, then N bytes of UTF-8 JSON. A request has
"jsonrpc": "2.0", a "method", optional "params" (array or object) and an
"id"; without an id it is a notification and gets no response. A batch is a
JSON array of requests, answered by one array of the responses to its
requests (not its notifications).

Uses only the standard library. Prints one line per check and exits with
status 1 if any check fails (2 if the conversation itself breaks).

Usage: python3 framed_client.py HOST:PORT
"""

import json
import socket
import struct
import sys

TIMEOUT_SECONDS = 10
HEADER = struct.Struct(">I")


class Connection:
    """One TCP connection speaking length-prefixed JSON frames."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT_SECONDS)
        self.next_id = 1

    def close(self):
        self.sock.close()

    def send(self, message):
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        self.sock.sendall(HEADER.pack(len(body)) + body)

    def _recv_exact(self, n):
        chunks = []
        while n > 0:
            chunk = self.sock.recv(n)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self):
        (length,) = HEADER.unpack(self._recv_exact(HEADER.size))
        return json.loads(self._recv_exact(length).decode("utf-8"))

    def fresh_id(self):
        self.next_id += 1
        return self.next_id

    def request(self, method, params=None, request_id=None):
        """Sends one request and returns the next frame (its response)."""
        if request_id is None:
            request_id = self.fresh_id()
        message = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params is not None:
            message["params"] = params
        self.send(message)
        return request_id, self.receive()

    def notify(self, method, params=None):
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)


class Checks:
    """Records and prints the outcome of each check."""

    def __init__(self):
        self.failures = 0

    def expect(self, name, ok, detail):
        if ok:
            print(f"ok    {name}")
        else:
            self.failures += 1
            print(f"FAIL  {name}: {detail}")

    def result(self, name, request_id, response, expected):
        ok = (
            isinstance(response, dict)
            and response.get("jsonrpc") == "2.0"
            and response.get("id") == request_id
            and "error" not in response
            and "result" in response
            and response["result"] == expected
        )
        self.expect(name, ok, f"expected result {expected!r} for id {request_id!r}, got {response!r}")

    def error(self, name, request_id, response, code, data):
        error = response.get("error") if isinstance(response, dict) else None
        ok = (
            isinstance(error, dict)
            and response.get("jsonrpc") == "2.0"
            and response.get("id") == request_id
            and "result" not in response
            and error.get("code") == code
            and error.get("data") == data
            and isinstance(error.get("message"), str)
        )
        self.expect(
            name, ok, f"expected error {code} with data {data!r} for id {request_id!r}, got {response!r}"
        )


def run(conn, checks):
    request_id, response = conn.request("add", [2, 3])
    checks.result("add by position [2, 3] = 5", request_id, response, 5)

    request_id, response = conn.request("add", {"b": 3, "a": 2})
    checks.result("add by name {a: 2, b: 3} = 5", request_id, response, 5)

    request_id, response = conn.request("add", [0.1, 0.2], request_id="string id")
    checks.result("add with a string id", request_id, response, 0.1 + 0.2)

    request_id, response = conn.request("div", [1, 0])
    checks.error("div by zero is error 1000 DivisionByZero", request_id, response, 1000, "DivisionByZero")

    request_id, response = conn.request("div", {"a": 7, "b": 2})
    checks.result("div 7 / 2 = 3.5", request_id, response, 3.5)

    name = "José Ñandú 世界 🌍"
    request_id, response = conn.request("hello", [name])
    checks.result("hello with a unicode name", request_id, response, f"Olá, {name}!")

    text = "echo ✓ \"quoted\" \\ \n tab\t"
    request_id, response = conn.request("echo", {"text": text})
    checks.result("echo returns text unchanged", request_id, response, text)

    request_id, response = conn.request("echo", [""])
    checks.result("echo of the empty string", request_id, response, "")

    request_id, response = conn.request("no_such_method", [])
    checks.expect(
        "unknown method is error -32601",
        isinstance(response.get("error"), dict)
        and response["error"].get("code") == -32601
        and response.get("id") == request_id,
        f"got {response!r}",
    )

    batch = [
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 101},
        {"jsonrpc": "2.0", "method": "echo", "params": ["not answered"]},
        {"jsonrpc": "2.0", "method": "mul", "params": {"a": 6, "b": 7}, "id": 102},
        {"jsonrpc": "2.0", "method": "hello", "params": ["Ana"], "id": "greeting"},
        {"jsonrpc": "2.0", "method": "div", "params": [1, 0], "id": 103},
    ]
    conn.send(batch)
    answer = conn.receive()
    checks.expect(
        "batch is answered with one array of 4 responses",
        isinstance(answer, list) and len(answer) == 4,
        f"got {answer!r}",
    )
    by_id = {m.get("id"): m for m in answer} if isinstance(answer, list) else {}
    checks.expect("batch ids match the requests", set(by_id) == {101, 102, "greeting", 103}, f"ids {list(by_id)!r}")
    checks.result("batch: add", 101, by_id.get(101, {}), 3)
    checks.result("batch: mul", 102, by_id.get(102, {}), 42)
    checks.result("batch: hello", "greeting", by_id.get("greeting", {}), "Olá, Ana!")
    checks.error("batch: div by zero", 103, by_id.get(103, {}), 1000, "DivisionByZero")

    conn.notify("add", [1, 1])
    conn.notify("no_such_method")
    request_id, response = conn.request("sub", [10, 4])
    checks.result("notifications get no response (next frame answers the next request)", request_id, response, 6)

    request_id, response = conn.request("rpc.ping")
    checks.result("rpc.ping answers pong", request_id, response, "pong")


def main():
    if len(sys.argv) != 2 or ":" not in sys.argv[1]:
        print(f"usage: {sys.argv[0]} HOST:PORT", file=sys.stderr)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    checks = Checks()
    try:
        conn = Connection(host, int(port))
        try:
            run(conn, checks)
        finally:
            conn.close()
    except (OSError, ValueError) as e:
        # OSError covers refused connections, timeouts and resets;
        # ValueError covers frames that are not UTF-8 JSON.
        print(f"FAIL  the conversation with {sys.argv[1]} broke: {e!r}")
        return 2
    if checks.failures:
        print(f"{checks.failures} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
