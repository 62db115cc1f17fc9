#!/usr/bin/env python3
"""Calls per second: framedrpc against rpc-demo, and xmlrpc.client against
Python's own SimpleXMLRPCServer, with the same `add`, from 1 and from 8
threads.

    python3 bench.py --demo PATH/TO/rpc-demo [--seconds 3] [--rounds 3]

Defaults: 3 rounds of 3 s per row. The rpc-demo server keeps its student
records in a temporary folder (``--db``), removed at the end: the bench
writes nothing in the user's data folder.

framedrpc: one shared proxy (one framed TCP connection, calls multiplexed
by id) for all threads; also one shared HTTP proxy. xmlrpc: a
ThreadingMixIn SimpleXMLRPCServer (a thread per connection, HTTP/1.1
keep-alive, logging off) in a process of its own, and one ServerProxy per
thread (a ServerProxy is not thread-safe). Each measurement runs for a
fixed time and counts the calls that completed with the right answer, and
the CPU time this process (the client) spent per call.

Every round measures every row, one after the other, so that a ratio is
taken between rows measured moments apart; on a busy machine the rounds
differ, and the medians are what to read. Prints each round, then the
median of each row and of each round's ratios.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from typing import Dict, List, Tuple

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


def measure(make_call, threads: int, seconds: float) -> Tuple[float, float]:
    """Calls per second of `make_call()` (a per-thread callable `f(i)`
    returning whether the answer was right) from `threads` threads, and
    the CPU seconds this process spent per call."""
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
    cpu = time.process_time()
    start.wait()
    for t in pool:
        t.join(seconds + 30)
    elapsed = time.monotonic() - began
    cpu = time.process_time() - cpu
    if wrong:
        raise AssertionError(f"{len(wrong)} wrong answers")
    calls = sum(counts)
    return calls / elapsed, cpu / max(calls, 1)


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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement (3)")
    args = parser.parse_args()
    if not args.demo:
        parser.error("give --demo PATH (the rpc-demo binary, a release build for real figures)")

    data = tempfile.TemporaryDirectory(prefix="framedrpc-bench-")
    demo, demo_port = start(
        [args.demo, "serve", "--listen", "127.0.0.1:0", "--db", os.path.join(data.name, "students.db")],
        r" on 127\.0\.0\.1:(\d+)",
    )
    xml, xml_port = start([sys.executable, __file__, "--xmlrpc-server"], r"^(\d+)")
    try:
        tcp = framedrpc.connect(f"tcp://127.0.0.1:{demo_port}")
        http = framedrpc.connect(f"http://127.0.0.1:{demo_port}")

        def shared(proxy):
            return lambda: (lambda n: proxy.add(n, 1) == n + 1)

        def own_xmlrpc():
            server = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{xml_port}")
            return lambda n: server.add(n, 1) == n + 1

        clients = (("framedrpc tcp://", shared(tcp)), ("framedrpc http://", shared(http)), ("xmlrpc.client", own_xmlrpc))
        rates: Dict[Tuple[int, str], List[float]] = {}
        cpus: Dict[Tuple[int, str], List[float]] = {}
        ratios: Dict[Tuple[int, str], List[float]] = {}
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.seconds} s per row, {args.rounds} round(s)")
        print(f"{'round':>5}  {'threads':>7}  {'client':<18} {'calls/s':>10} {'CPU us/call':>12}")
        for round_ in range(1, args.rounds + 1):
            for threads in (1, 8):
                by = {}
                for name, make in clients:
                    rate, cpu = measure(make, threads, args.seconds)
                    by[name] = rate
                    rates.setdefault((threads, name), []).append(rate)
                    cpus.setdefault((threads, name), []).append(cpu)
                    print(f"{round_:>5}  {threads:>7}  {name:<18} {rate:>10.0f} {cpu * 1e6:>12.1f}", flush=True)
                for name in ("framedrpc tcp://", "framedrpc http://"):
                    ratios.setdefault((threads, name), []).append(by[name] / by["xmlrpc.client"])
        print("medians:")
        for (threads, name), values in rates.items():
            cpu = statistics.median(cpus[(threads, name)])
            print(f"{'':>5}  {threads:>7}  {name:<18} {statistics.median(values):>10.0f} {cpu * 1e6:>12.1f}")
        for threads in (1, 8):
            parts = []
            for name in ("framedrpc tcp://", "framedrpc http://"):
                each = ratios[(threads, name)]
                parts.append(
                    f"{name.split()[1]} / xmlrpc = {statistics.median(each):.1f}x "
                    f"(rounds: {', '.join(f'{r:.1f}' for r in each)})"
                )
            print(f"{threads} thread(s): " + "; ".join(parts))
        tcp.close()
        http.close()
    finally:
        for process in (demo, xml):
            process.kill()
            process.wait(10)
        data.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
