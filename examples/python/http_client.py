#!/usr/bin/env python3
"""A client for the demo server over HTTP, with the standard library only.

Protocol: JSON-RPC 2.0 over HTTP on the server's port: POST /rpc with the
JSON message as the body (Content-Type: application/json). Every JSON-RPC
answer comes back with status 200, errors included; a body of notifications
only gets 204. REST routes: GET /api/{method}/{args...} for read-only
methods.

Prints one line per check and exits with status 1 if any check fails (2 if
the conversation itself breaks).

Usage: python3 http_client.py HOST:PORT
"""

import json
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 10


def post(base, message):
    """POSTs one JSON-RPC message; returns (status, decoded body or None)."""
    request = urllib.request.Request(
        base + "/rpc",
        data=json.dumps(message).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        body = response.read()
        return response.status, (json.loads(body) if body else None)


def get(base, path):
    """GETs a REST route; returns (status, decoded body)."""
    try:
        with urllib.request.urlopen(base + path, timeout=TIMEOUT_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


failures = 0


def check(what, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if not ok and detail else ""))
    if not ok:
        failures += 1


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    base = "http://" + sys.argv[1]

    status, answer = post(base, {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1})
    check("add(2, 3) is 5", status == 200 and answer == {"jsonrpc": "2.0", "result": 5.0, "id": 1}, answer)

    status, answer = post(base, {"jsonrpc": "2.0", "method": "hello", "params": {"name": "Zé"}, "id": "h"})
    check("hello by name", answer["result"] == "Olá, Zé!", answer)

    status, answer = post(base, {"jsonrpc": "2.0", "method": "div", "params": [1, 0], "id": 2})
    check(
        "division by zero is an application error with status 200",
        status == 200 and answer["error"]["code"] == 1000 and answer["error"]["data"] == "DivisionByZero",
        answer,
    )

    status, answer = post(base, [
        {"jsonrpc": "2.0", "method": "mul", "params": [4, 5], "id": "a"},
        {"jsonrpc": "2.0", "method": "echo", "params": ["fire and forget"]},
        {"jsonrpc": "2.0", "method": "nope", "id": "b"},
    ])
    by_id = {member["id"]: member for member in answer}
    check(
        "a batch: one answer per request, none for the notification",
        len(answer) == 2 and by_id["a"]["result"] == 20.0 and by_id["b"]["error"]["code"] == -32601,
        answer,
    )

    status, answer = post(base, {"jsonrpc": "2.0", "method": "echo", "params": ["x"]})
    check("a notification gets 204 and no body", status == 204 and answer is None, (status, answer))

    status, answer = get(base, "/api/mult/4/5")
    check("GET /api/mult/4/5 is 20", status == 200 and answer == 20.0, (status, answer))

    status, answer = get(base, "/api/div/4/0")
    check("GET /api/div/4/0 is 422", status == 422 and answer["error"]["code"] == 1000, (status, answer))

    if failures:
        print(f"{failures} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"the conversation broke: {error!r}", file=sys.stderr)
        sys.exit(2)
