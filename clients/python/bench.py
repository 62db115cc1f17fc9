#!/usr/bin/env python3
"""Calls per second: framedrpc against rpc-demo, and xmlrpc.client against
Python's own SimpleXMLRPCServer, with the same `add`, from 1 and from 8
threads.

    python3 bench.py --demo PATH/TO/rpc-demo [--seconds 3]

framedrpc: one shared proxy (one framed TCP connection, calls multiplexed
by id) for all threads; also one shared HTTP proxy. xmlrpc: a
ThreadingMixIn SimpleXMLRPCServer (a thread per connection, HTTP/1.1
keep-alive, logging off) in a process of its own, and one ServerProxy per
thread (a ServerProxy is not thread-safe). Each measurement runs for a
fixed time and counts the calls that completed with the right answer.
Prints a table and the ratios.
"""

import argparse
import os
import re
import subprocess
import sys
import threading
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import framedrpc  # noqa: E402


def xmlrpc_server_main() -> None:
    """Runs the xmlrpc server on a free port, prints it, serves forever."""
    from socketserver import ThreadingMixIn
    from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

    class Handler(SimpleXMLRPCRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as framedrpc's HTTP pool

    class Server(ThreadingMixIn, SimpleXMLRPCServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), requestHandler=Handler, logRequests=False)
    server.register_function(lambda a, b: a + b, "add")
    print(server.server_address[1], flush=True)
    server.serve_forever()


def measure(make_call, threads: int, seconds: float) -> float:
    """Calls per second of `make_call()` (a per-thread callable `f(i)`
    returning whether the answer was right) from `threads` threads."""
    counts = [0] * threads
    wrong = []
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def work(k: int) -> None:
        call = make_call()
        start.wait()
        n = 0
        while time.monotonic() < stop_at[0]:
            if not call(n):
                wrong.append(n)
            n += 1
        counts[k] = n

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for t in pool:
        t.join(seconds + 30)
    elapsed = time.monotonic() - began
    if wrong:
        raise AssertionError(f"{len(wrong)} wrong answers")
    return sum(counts) / elapsed


def start(args, pattern: str):
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    found = re.search(pattern, line)
    if not found:
        process.kill()
        raise RuntimeError(f"unexpected first line from {args[0]}: {line!r}")
    return process, int(found.group(1))


def main() -> int:
    if sys.argv[1:2] == ["--xmlrpc-server"]:
        xmlrpc_server_main()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default=os.environ.get("RPC_DEMO_BIN"), help="the rpc-demo binary (or RPC_DEMO_BIN)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement (3)")
    args = parser.parse_args()
    if not args.demo:
        parser.error("give --demo PATH (the rpc-demo binary, a release build for real figures)")

    demo, demo_port = start([args.demo, "serve", "--listen", "127.0.0.1:0"], r" on 127\.0\.0\.1:(\d+)")
    xml, xml_port = start([sys.executable, __file__, "--xmlrpc-server"], r"^(\d+)")
    try:
        tcp = framedrpc.connect(f"tcp://127.0.0.1:{demo_port}")
        http = framedrpc.connect(f"http://127.0.0.1:{demo_port}")

        def shared(proxy):
            return lambda: (lambda n: proxy.add(n, 1) == n + 1)

        def own_xmlrpc():
            server = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{xml_port}")
            return lambda n: server.add(n, 1) == n + 1

        rows = []
        for threads in (1, 8):
            rows.append((threads, "framedrpc tcp://", measure(shared(tcp), threads, args.seconds)))
            rows.append((threads, "framedrpc http://", measure(shared(http), threads, args.seconds)))
            rows.append((threads, "xmlrpc.client", measure(own_xmlrpc, threads, args.seconds)))
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.seconds} s per row")
        print(f"{'threads':>7}  {'client':<18} {'calls/s':>10}")
        for threads, name, rate in rows:
            print(f"{threads:>7}  {name:<18} {rate:>10.0f}")
        for threads in (1, 8):
            by = {name: rate for t, name, rate in rows if t == threads}
            print(
                f"{threads} thread(s): framedrpc tcp:// / xmlrpc = {by['framedrpc tcp://'] / by['xmlrpc.client']:.1f}x, "
                f"http:// / xmlrpc = {by['framedrpc http://'] / by['xmlrpc.client']:.1f}x"
            )
        tcp.close()
        http.close()
    finally:
        for process in (demo, xml):
            process.kill()
            process.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
