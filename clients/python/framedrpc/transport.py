"""Blocking transports of the threaded client: framed TCP (optionally in
TLS) with a reader thread, and HTTP(S) POSTs with a pool of keep-alive
connections. Also the address parsing shared with the asyncio client."""

import copy
import http.client
import json
import socket
import ssl
import struct
import sys
import threading
from typing import Any, List, Optional
from urllib.parse import urlsplit

from .core import DEFAULT_MAX_FRAME, FrameDecoder, Session, encode_frame
from .errors import ProtocolError, error_from_object

_READ_SIZE = 256 * 1024


class Address:
    """A parsed server URL.

    Attributes:
        scheme (str): ``tcp``, ``tls``, ``http`` or ``https``.
        host (str), port (int), path (str: ``/rpc`` unless the URL names one;
            HTTP only).
    """

    SCHEMES = ("tcp", "tls", "http", "https")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in self.SCHEMES:
            raise ValueError(f"unsupported URL scheme in {url!r}: use one of tcp://, tls://, http://, https://")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        port = parts.port
        if port is None:
            if parts.scheme in ("tcp", "tls"):
                raise ValueError(f"no port in {url!r}: framed TCP has no default port")
            port = 443 if parts.scheme == "https" else 80
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port
        self.path = parts.path or "/rpc"

    @property
    def secure(self) -> bool:
        """TLS (``tls://``, ``https://``)."""
        return self.scheme in ("tls", "https")

    @property
    def framed(self) -> bool:
        """Length-prefixed frames (``tcp://``, ``tls://``) rather than HTTP."""
        return self.scheme in ("tcp", "tls")


def tls_context(ca_file: Optional[str], ssl_context: Optional[ssl.SSLContext]) -> ssl.SSLContext:
    """``ssl_context`` if given, else a default client context that trusts
    ``ca_file`` (or the system's CAs when ``ca_file`` is ``None``), checking
    the host name."""
    if ssl_context is not None:
        return ssl_context
    return ssl.create_default_context(cafile=ca_file)


def fresh(error: BaseException) -> BaseException:
    """A copy of ``error`` to raise in another thread (each raise adds its
    own traceback; one instance raised in many threads would mix them)."""
    try:
        return copy.copy(error)
    except Exception:  # pragma: no cover - an exception that cannot be copied
        return error


class _PlainIO:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def recv(self) -> bytes:
        return self.sock.recv(_READ_SIZE)


class _TlsIO:
    """TLS over a blocking socket with ``ssl.MemoryBIO``: the reader thread
    receives and the callers' threads send at the same time, which an
    ``SSLSocket`` does not allow; here only the in-memory TLS state is
    locked, never a socket wait."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, hostname: str) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False, server_hostname=hostname)
        self.lock = threading.Lock()
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = sock.recv(_READ_SIZE)
                if not data:
                    raise ConnectionResetError(
                        "the server closed the connection during the TLS handshake (is the port plain TCP?)"
                    ) from None
                self.incoming.write(data)
        self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def send(self, data: bytes) -> None:
        with self.lock:
            self.tls.write(data)
            self._flush()

    def recv(self) -> bytes:
        while True:
            with self.lock:
                try:
                    data = self.tls.read(_READ_SIZE)
                except ssl.SSLWantReadError:
                    data = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
                self._flush()
            if data is not None:
                return data
            raw = self.sock.recv(_READ_SIZE)
            with self.lock:
                if raw:
                    self.incoming.write(raw)
                else:
                    self.incoming.write_eof()


class FramedConnection:
    """One framed connection: a socket, its :class:`Session`, and a reader
    thread that resolves the waiting calls as their answers arrive, in any
    order. Any thread may :meth:`send`.

    When the connection ends (the server closes, a protocol error, a failed
    write), every waiting call is rejected with a ``ConnectionError``
    (or with the ``-32001``/``-32004`` error the server sent before closing)
    and :attr:`usable` turns false; the client dials a new one for the next
    call.
    """

    def __init__(
        self,
        address: Address,
        context: Optional[ssl.SSLContext],
        connect_timeout: Optional[float],
        max_frame: int = DEFAULT_MAX_FRAME,
        send_timeout: Optional[float] = 30.0,
    ) -> None:
        self.session = Session(max_frame)
        self._decoder = FrameDecoder(max_frame)
        self._dead: Optional[BaseException] = None
        self._closed_here = False
        sock = socket.create_connection((address.host, address.port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                self._io: Any = _TlsIO(sock, context, address.host)
            else:
                self._io = _PlainIO(sock)
            sock.settimeout(None)
            if send_timeout is not None and sys.platform.startswith("linux"):
                # A server that stops reading must not block a sender
                # forever: the kernel fails the write after this long.
                seconds = int(send_timeout)
                micros = int((send_timeout - seconds) * 1e6)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, micros))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = threading.Thread(target=self._read_loop, name="framedrpc-reader", daemon=True)
        self._reader.start()

    @property
    def usable(self) -> bool:
        """False once the connection ended or the server announced its shutdown."""
        return self._dead is None and not self.session.draining

    def send(self, body: bytes) -> None:
        """Writes one frame. A failed write ends the connection (a partial
        frame cannot be taken back) and raises that ``OSError``."""
        dead = self._dead
        if dead is not None:
            raise fresh(dead)
        try:
            self._io.send(encode_frame(body))
        except OSError as e:
            self._end(e)
            raise

    def send_quietly(self, body: bytes) -> None:
        """As :meth:`send`, ignoring a failure (for ``rpc.cancel``)."""
        try:
            self.send(body)
        except OSError:
            pass

    def close(self) -> None:
        """Closes the socket; waiting calls fail with ``ConnectionAbortedError``."""
        self._closed_here = True
        self._end(ConnectionAbortedError("the connection was closed by the client"))

    def _read_loop(self) -> None:
        session = self.session
        decoder = self._decoder
        error: BaseException
        try:
            while True:
                data = self._io.recv()
                if not data:
                    break
                for body in decoder.feed(data):
                    for reply in session.receive(body):
                        self.send(reply)
            if decoder.pending_bytes:
                error = ConnectionResetError("the server closed the connection in the middle of a frame")
            else:
                error = ConnectionResetError("the server closed the connection")
        except ProtocolError as e:
            error = e
        except OSError as e:
            error = e
        except Exception as e:  # a bug in a notification callback, say; never hang the callers
            error = ProtocolError(f"the reader thread failed: {e!r}")
        if self._closed_here:
            error = ConnectionAbortedError("the connection was closed by the client")
        elif session.closing_error is not None:
            error = session.closing_error
        self._end(error)

    def _end(self, error: BaseException) -> None:
        if self._dead is None:
            self._dead = error
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        dead = self._dead
        self.session.fail_all(lambda: fresh(dead))


class HttpTransport:
    """JSON-RPC over HTTP(S) POSTs (``PROTOCOL.md``, "HTTP"): one request
    (or batch) per POST, on keep-alive connections taken from a pool so
    that threads do not wait for each other. The token, if any, travels as
    ``Authorization: Bearer``."""

    def __init__(
        self,
        address: Address,
        context: Optional[ssl.SSLContext],
        token: Optional[str],
        connect_timeout: Optional[float],
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.address = address
        self.context = context
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self._pool: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _new(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(
                self.address.host, self.address.port, timeout=self.connect_timeout, context=self.context
            )
        return http.client.HTTPConnection(self.address.host, self.address.port, timeout=self.connect_timeout)

    def post(self, body: bytes, timeout: Optional[float]) -> Any:
        """POSTs ``body``; returns the parsed JSON answer, or ``None`` for
        ``204 No Content`` (notifications only).

        Raises the :class:`RpcError` of a refusal below JSON-RPC (``401``:
        :class:`Unauthorized`, ...), ``socket.timeout`` (a ``TimeoutError``)
        when ``timeout`` passes, ``ConnectionError`` when the server is gone,
        :class:`ProtocolError` for an answer that is not JSON-RPC.
        """
        with self._lock:
            conn = self._pool.pop() if self._pool else None
        reused = conn is not None
        if conn is None:
            conn = self._new()
        for attempt in (0, 1):
            try:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request("POST", self.address.path, body, self.headers)
                response = conn.getresponse()
                data = response.read(self.max_frame + 1)
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if attempt == 0 and reused:
                    # A kept-alive connection the server had closed (idle
                    # timeout, restart): the request never reached it.
                    conn = self._new()
                    continue
                raise
            except BaseException:
                conn.close()
                raise
        if len(data) > self.max_frame:
            conn.close()
            raise ProtocolError(f"the HTTP answer exceeds the maximum of {self.max_frame} bytes")
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                self._pool.append(conn)
        status = response.status
        if status == 204:
            return None
        try:
            message = json.loads(data) if data else None
        except ValueError:
            message = None
        if status == 200 and message is not None:
            return message
        if isinstance(message, dict) and "error" in message:
            raise error_from_object(message["error"])
        text = data[:200].decode("utf-8", "replace")
        raise ProtocolError(f"HTTP {status} {response.reason} from {self.address.url}: {text!r}")

    def close(self) -> None:
        """Closes the pooled connections (a POST in progress finishes)."""
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

