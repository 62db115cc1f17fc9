#!/usr/bin/env python3
"""The course's XML-RPC calculator client, unchanged in spirit, against the
demo server: Python's standard `xmlrpc.client`, no other package.

Protocol: XML-RPC on the server's port, POST /RPC2 (the path ServerProxy
uses when the URL has none). Faults carry the JSON-RPC code and message;
an application error's data follows the message as JSON ("; data: ...").

Prints one line per check and exits with status 1 if any check fails (2 if
the conversation itself breaks).

Usage: python3 xmlrpc_client.py HOST:PORT [TOKEN]
  With TOKEN, the server requires it: calls send it as a bearer token, and a
  proxy without it must be refused with HTTP 401.
"""

import sys
import xmlrpc.client

failures = 0


def check(what, got, expected):
    global failures
    if got == expected:
        print(f"ok   {what}: {got!r}")
    else:
        failures += 1
        print(f"FAIL {what}: got {got!r}, expected {expected!r}")


def fault_of(call):
    """The (faultCode, faultString) a call fails with, or None."""
    try:
        call()
    except xmlrpc.client.Fault as fault:
        return fault.faultCode, fault.faultString
    return None


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    url = "http://" + sys.argv[1]
    token = sys.argv[2] if len(sys.argv) == 3 else None
    headers = [("Authorization", "Bearer " + token)] if token else []
    s = xmlrpc.client.ServerProxy(url, headers=headers)

    # The course's client: s.add(int(numero1), int(numero2)). The demo's
    # calculator works in f64, so the sum comes back as a double.
    check("add(15, 10)", s.add(15, 10), 25.0)
    check("sub(15, 10)", s.sub(15, 10), 5.0)
    check("mul(15, 10)", s.mul(15, 10), 150.0)
    check("div(15, 10)", s.div(15, 10), 1.5)
    check("pow(2, 10)", s.pow(2, 10), 1024.0)
    check("soma(1.5, 2)", s.soma(1.5, 2), 3.5)
    check("mult(4, 5)", s.mult(4, 5), 20.0)
    check("pot(2, 0.5)", s.pot(2, 0.5), 2 ** 0.5)
    # (Python sends "\r" unescaped, so XML reads it as "\n": not sent here.)
    check("hello with markup and unicode", s.hello("<Zé & Ana>\t\n"), "Olá, <Zé & Ana>\t\n!")
    check("echo", s.echo("a]]>b"), "a]]>b")
    check("sleep(1)", s.sleep(1), 1)

    check("div(1, 0) faults", fault_of(lambda: s.div(1, 0)),
          (1000, 'division by zero; data: "DivisionByZero"'))
    check("pow(0, -1) faults", fault_of(lambda: s.pow(0, -1)),
          (1000, 'the result of pow is not a finite number; data: {"NotFinite":{"operation":"pow"}}'))
    code, _ = fault_of(lambda: s.nope()) or (None, None)
    check("an unknown method faults with -32601", code, -32601)
    code, _ = fault_of(lambda: s.add(1)) or (None, None)
    check("a missing param faults with -32602", code, -32602)
    code, _ = fault_of(lambda: s.add(float("inf"), 1)) or (None, None)
    check("an infinite double faults with -32602", code, -32602)
    nil = xmlrpc.client.ServerProxy(url, headers=headers, allow_none=True)
    code, _ = fault_of(lambda: nil.add(None, 1)) or (None, None)
    check("nil for a number faults with -32602", code, -32602)

    multi = xmlrpc.client.MultiCall(s)
    multi.add(1, 2)
    multi.mult(3, 4)
    multi.hello("multi")
    check("multicall", list(multi()), [3.0, 12.0, "Olá, multi!"])
    multi = xmlrpc.client.MultiCall(s)
    multi.add(1, 2)
    multi.div(1, 0)
    results = multi()
    check("multicall result before a fault", results[0], 3.0)
    check("multicall fault", fault_of(lambda: results[1]),
          (1000, 'division by zero; data: "DivisionByZero"'))

    methods = s.system.listMethods()
    for name in ["add", "soma", "sub", "mul", "mult", "div", "pow", "pot", "hello", "echo",
                 "sleep", "system.listMethods", "system.methodHelp",
                 "system.methodSignature", "system.multicall"]:
        check(f"listMethods has {name}", name in methods, True)
    check("methodHelp('add')", s.system.methodHelp("add"), "Returns `a + b`.")
    check("methodHelp('soma')", s.system.methodHelp("soma"), "Returns `a + b`.")
    check("methodSignature('mult')", s.system.methodSignature("mult"),
          [["double", "double", "double"]])
    check("methodSignature('hello')", s.system.methodSignature("hello"), [["string", "string"]])

    if token:
        anonymous = xmlrpc.client.ServerProxy(url)
        try:
            anonymous.add(1, 2)
            check("no token is refused", "answered", 401)
        except xmlrpc.client.ProtocolError as e:
            check("no token is refused", e.errcode, 401)

    if failures:
        print(f"{failures} checks failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # the conversation broke: say how
        print(f"FAIL the conversation broke: {e!r}")
        sys.exit(2)
