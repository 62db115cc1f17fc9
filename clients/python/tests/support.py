"""Helpers of the test suite: a real `rpc-demo serve` in a child process,
and a scripted fake server for the faults a real one never makes.

The Rust test `tests/tests/python_package.rs` passes the paths in:
RPC_DEMO_BIN (the demo binary), and for TLS FRAMEDRPC_TLS_CA,
FRAMEDRPC_TLS_CERT and FRAMEDRPC_TLS_KEY (PEM files it made with rcgen).
"""

import os
import queue
import re
import socket
import struct
import subprocess
import tempfile
import threading
from typing import Callable, List, Optional

#: The longest any single step may wait; a hang becomes a failure.
LIMIT = 10.0


def demo_binary() -> str:
    path = os.environ.get("RPC_DEMO_BIN")
    if not path or not os.path.isfile(path):
        raise RuntimeError(
            f"RPC_DEMO_BIN must name the rpc-demo binary (got {path!r}); "
            "run the suite through `cargo test -p rpc-tests --test python_package`"
        )
    return path


def tls_files():
    names = ("FRAMEDRPC_TLS_CA", "FRAMEDRPC_TLS_CERT", "FRAMEDRPC_TLS_KEY")
    paths = [os.environ.get(n) for n in names]
    if not all(p and os.path.isfile(p) for p in paths):
        raise RuntimeError(f"{', '.join(names)} must name PEM files (the Rust test makes them)")
    return paths


class DemoServer:
    """`rpc-demo serve` on 127.0.0.1: a free port, or `port` (to restart
    on the same one). Use as a context manager; `stop()` kills only this
    child."""

    def __init__(self, port: int = 0, token: Optional[str] = None, tls: bool = False, extra: List[str] = ()) -> None:
        self.token = token
        self.tls = tls
        args = [demo_binary(), "serve", "--listen", f"127.0.0.1:{port}"]
        if token is not None:
            args += ["--token", token]
        if tls:
            _, cert, key = tls_files()
            args += ["--tls-cert", cert, "--tls-key", key]
        args += list(extra)
        self._log = tempfile.TemporaryFile()
        # Student records go to a temporary data folder, not the home.
        env = dict(os.environ, XDG_DATA_HOME=os.path.join(tempfile.gettempdir(), "rpc-demo-tests"))
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env
        )
        lines: "queue.Queue[bytes]" = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=LIMIT).decode()
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"rpc-demo did not say it was listening within {LIMIT} s")
        found = re.search(r" on 127\.0\.0\.1:(\d+)", line)
        if not found:
            self.stop()
            self._log.seek(0)
            raise RuntimeError(f"unexpected first line from rpc-demo: {line!r}; log: {self._log.read()[-2000:]!r}")
        self.port = int(found.group(1))

    def url(self, scheme: str = "tcp") -> str:
        host = "localhost" if scheme in ("tls", "https") else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=LIMIT)
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> "DemoServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()


def frame(obj_or_bytes) -> bytes:
    import json

    body = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return struct.pack(">I", len(body)) + body


class FakeServer:
    """A TCP server for one connection whose behaviour is a function
    `script(conn)` run on the accepted socket (read requests, send
    anything). For faults: garbage frames, oversized frames, closing
    mid-call, namespaced methods."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(LIMIT)
        self.port = self.listener.getsockname()[1]
        self.errors: List[BaseException] = []
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()  # one connection: then the thread ends
            conn.settimeout(LIMIT)
            with conn:
                self.script(conn)
        except (socket.timeout, OSError):
            pass
        except BaseException as e:  # surfaced by the test
            self.errors.append(e)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()
        self.thread.join(LIMIT)

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_request(conn: socket.socket):
    """One request from the client (None at end of input)."""
    import json

    header = _exact(conn, 4)
    if header is None:
        return None
    (n,) = struct.unpack(">I", header)
    body = _exact(conn, n)
    return json.loads(body) if body is not None else None


def _exact(conn: socket.socket, n: int) -> Optional[bytes]:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
