"""Blocking transports of the threaded client: framed TCP (optionally in
TLS), read by the calling threads, and HTTP(S) POSTs with a pool of
keep-alive connections. Also the address parsing shared with the asyncio
client."""

import copy
import http.client
import json
import select
import socket
import ssl
import struct
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional
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
        if "://" not in url:  # HOST:PORT, as `rpc-demo call` takes it
            url = "tcp://" + url
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


def naming(address: Address, error: OSError) -> OSError:
    """``error`` again (the same class, so ``except ConnectionRefusedError``
    still works), its message naming the address that was tried:
    ``could not connect to 127.0.0.1:7070: Connection refused``."""
    reason = error.strerror or str(error) or type(error).__name__
    try:
        named = type(error)(error.errno, f"could not connect to {address.host}:{address.port}: {reason}")
    except Exception:  # pragma: no cover - an OSError subclass with another constructor
        return error
    named.__cause__ = error
    return named


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


class Waiter:
    """A call waiting for its answer, for the threaded client: settled by
    :meth:`resolve` or :meth:`reject` from whichever thread reads the
    answer, and waited for with :meth:`FramedConnection.wait` (or checked
    with :attr:`settled`, for HTTP and batches).

    Its lock is held while nothing has happened; releasing it wakes the
    waiting thread, which then looks at the flags: ``settled`` (the answer
    is in) or ``promoted`` (it is now the thread that reads the
    connection). A release that finds the lock released already is a
    second reason for one wake-up, and is dropped: the flags carry both.
    """

    __slots__ = ("_lock", "_value", "_error", "settled", "promoted", "on_notification")

    def __init__(self, on_notification: Optional[Callable[[str, Any], None]] = None) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self.settled = False
        self.promoted = False
        self.on_notification = on_notification

    def resolve(self, value: Any) -> None:
        self._value = value
        self.settled = True
        self.wake()

    def reject(self, error: BaseException) -> None:
        self._error = error
        self.settled = True
        self.wake()

    def wake(self) -> None:
        """Wakes the waiting thread (after setting a flag)."""
        try:
            self._lock.release()
        except RuntimeError:  # released already: that wake-up reads this flag too
            pass

    def block(self, timeout: Optional[float]) -> bool:
        """Waits for a wake-up: ``True`` after one, ``False`` when
        ``timeout`` seconds (``None``: no limit) passed first."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(True, timeout) if timeout > 0 else self._lock.acquire(False)

    def outcome(self) -> Any:
        """The result, or raises the error (once settled)."""
        if self._error is not None:
            raise self._error
        return self._value


# SO_RCVTIMEO bounds a read without the extra poll() that a Python socket
# timeout costs per read. Its value is a struct timeval where that layout
# is known; elsewhere a read waits in select() first.
_TIMEVAL = struct.Struct("ll") if sys.platform.startswith(("linux", "darwin", "freebsd")) else None
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
# How much later than its deadline a waiting read may end (seconds).
_READ_SLACK = 0.001
# How long after a read refresh() trusts it (seconds).
_FRESH = 0.001
# Bytes of frames that may wait for another thread's write (see send).
_QUEUE_LIMIT = 1 << 20


class _PlainIO:
    """A plain socket. :meth:`recv` reads into one buffer kept for the
    connection (a new 256 KiB ``bytes`` per read costs an ``mmap`` and a
    ``munmap``): what it returns is valid until the next read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.view = memoryview(bytearray(_READ_SIZE))

    def send(self, data: bytes) -> None:
        """Writes ``data`` (one thread at a time: the connection's writer)."""
        self.sock.sendall(data)

    def recv(self, flags: int = 0) -> memoryview:
        return self.view[: self.sock.recv_into(self.view, _READ_SIZE, flags)]

    def buffered(self) -> bool:
        """Bytes already received and not yet returned by :meth:`recv`."""
        return False


class _TlsIO:
    """TLS over a blocking socket with ``ssl.MemoryBIO``: one thread
    receives and the callers' threads send at the same time, which an
    ``SSLSocket`` does not allow; here only the in-memory TLS state is
    locked, never a socket wait."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, hostname: str) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False, server_hostname=hostname)
        self.lock = threading.Lock()
        self.plain = memoryview(bytearray(_READ_SIZE))  # decrypted bytes, valid until the next read
        self.raw = memoryview(bytearray(_READ_SIZE))
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

    def recv(self, flags: int = 0) -> memoryview:
        """Decrypted bytes (empty at the end), valid until the next read.
        ``flags`` apply to the socket's reads: with ``MSG_DONTWAIT`` a
        partial record stays buffered here and ``BlockingIOError`` is
        raised."""
        while True:
            with self.lock:
                try:
                    # With a buffer, read() returns the count (typeshed says bytes).
                    count: Optional[int] = self.tls.read(_READ_SIZE, self.plain)  # type: ignore[assignment]
                except ssl.SSLWantReadError:
                    count = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    count = 0
                self._flush()
            if count is not None:
                return self.plain[:count]
            received = self.sock.recv_into(self.raw, _READ_SIZE, flags)
            with self.lock:
                if received:
                    self.incoming.write(self.raw[:received])
                else:
                    self.incoming.write_eof()

    def buffered(self) -> bool:
        """Received bytes not yet decrypted and returned by :meth:`recv`."""
        return self.incoming.pending > 0 or self.tls.pending() > 0


class FramedConnection:
    """One framed connection: a socket, its :class:`Session`, and the
    reading of its answers, in any order. Any thread may :meth:`send`.

    **Who reads.** There is no reader thread per call: a thread that waits
    for an answer (:meth:`wait`) reads the socket itself when no other
    thread is reading, and resolves every answer it finds, its own and
    others' (leader/follower). The other waiting threads block on their
    own lock. When the reading thread has its answer it hands the reading
    on to one of them, or, if none waits but streams are open, to a helper
    thread that reads for the streams (started the first time it is
    needed); otherwise nobody reads until the next call. So one thread
    making calls in turn sends, then reads its answer, with no hand-off to
    another thread; many threads share each read and each wake-up.
    :meth:`refresh`, before a call, reads without waiting what came while
    nobody was reading (a shutdown notice, the server's close).

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
        # The reading role: held by at most one thread at a time, passed
        # on under _guard. _parked: the waiters blocked for an answer, in
        # the order they came (a dict as an ordered set).
        self._guard = threading.Lock()
        self._reading = False
        self._parked: Dict[Waiter, None] = {}
        self._helper: Optional[threading.Thread] = None
        self._helper_wake = threading.Lock()
        self._helper_wake.acquire()
        self._helper_turn = False
        self._read_limit: Optional[float] = None  # SO_RCVTIMEO now (None: none)
        self._last_read = 0.0  # time.monotonic() of the last read that brought bytes
        # Frames waiting for the thread that is writing (see send).
        self._out_guard = threading.Lock()
        self._room = threading.Condition(self._out_guard)  # the queue was taken or the writer left
        self._room_waiters = 0
        self._outbox: List[bytes] = []
        self._queued = 0
        self._writing = False
        try:
            sock = socket.create_connection((address.host, address.port), timeout=connect_timeout)
        except OSError as e:
            raise naming(address, e) from e
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
        self._poll: Any = None
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)

    @property
    def usable(self) -> bool:
        """False once the connection ended or the server announced its shutdown."""
        return self._dead is None and not self.session.draining

    def send(self, body: bytes) -> None:
        """Writes one frame, or leaves it to the thread writing at the
        moment, which writes every frame queued meanwhile in one system
        call (unless more than ``_QUEUE_LIMIT`` bytes would wait: then
        this thread waits until the writer takes them). A failed write
        ends the connection (a partial frame cannot be taken back), fails
        the calls waiting, and raises that ``OSError`` in the thread that
        wrote."""
        dead = self._dead
        if dead is not None:
            raise fresh(dead)
        frame = encode_frame(body)
        guard = self._out_guard
        with guard:
            while self._writing:
                if self._queued + len(frame) <= _QUEUE_LIMIT:
                    self._outbox.append(frame)
                    self._queued += len(frame)
                    return
                # Too much queued: wait until the writer takes it (or ends).
                self._room_waiters += 1
                try:
                    self._room.wait()
                finally:
                    self._room_waiters -= 1
            self._writing = True
            box = self._outbox
            box.append(frame)
            self._outbox = []
            self._queued = 0
        # This thread is the writer until it finds nothing more queued.
        while True:
            try:
                self._io.send(box[0] if len(box) == 1 else b"".join(box))
            except BaseException as e:
                with guard:
                    self._writing = False
                    self._outbox = []
                    self._queued = 0
                    if self._room_waiters:
                        self._room.notify_all()
                if not isinstance(e, OSError):  # KeyboardInterrupt: a frame may be cut short
                    self._end(ConnectionAbortedError(f"a write to the server was interrupted ({e!r})"))
                    raise
                self._end(e)
                if self._dead is not e:  # it had ended already (a closed socket): say why
                    raise fresh(self._dead) from None  # type: ignore[arg-type]
                raise
            with guard:
                box = self._outbox
                if self._room_waiters:
                    self._room.notify_all()
                if not box:
                    self._writing = False
                    return
                self._outbox = []
                self._queued = 0

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

    # ------------------------------------------------------------ waiting --

    def wait(self, waiter: Waiter, deadline: Optional[float]) -> bool:
        """Blocks until ``waiter`` is settled (``True``) or the
        ``time.monotonic()`` value ``deadline`` passes first (``False``;
        ``None``: no limit). Reads the connection meanwhile if no other
        thread does (see the class)."""
        guard = self._guard
        while True:
            with guard:
                promoted = waiter.promoted
                waiter.promoted = False
                settled = waiter.settled
                if settled:
                    lead = False
                    self._parked.pop(waiter, None)
                elif promoted or not self._reading:
                    self._reading = lead = True
                else:
                    lead = False
                    self._parked[waiter] = None
            if settled:
                if promoted:
                    self._hand_off()
                return True
            if lead:
                try:
                    self._lead(waiter, deadline)
                finally:
                    self._hand_off()
                return waiter.settled
            try:
                woke = waiter.block(None if deadline is None else deadline - time.monotonic())
            except BaseException:  # KeyboardInterrupt: never strand the reading role
                if self._unpark(waiter) and waiter.promoted:
                    waiter.promoted = False
                    self._hand_off()
                raise
            if not woke and not self._unpark(waiter):
                return False
            # Woken (settled or promoted), or either while timing out: look again.

    def _unpark(self, waiter: Waiter) -> bool:
        """Takes ``waiter`` off the parked ones; ``True`` if it has been
        settled or promoted meanwhile."""
        with self._guard:
            self._parked.pop(waiter, None)
            return waiter.promoted or waiter.settled

    def _lead(self, waiter: Waiter, deadline: Optional[float]) -> None:
        """Reads until ``waiter`` is settled, ``deadline`` passes or the
        connection ends."""
        while not waiter.settled and self._dead is None:
            if deadline is None:
                self._read(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._read(remaining)

    def _hand_off(self) -> None:
        """Passes the reading role on: to the first parked waiter still
        waiting, else to the helper thread if streams are open, else to
        nobody."""
        start = None
        with self._guard:
            parked = self._parked
            while parked:
                waiter = next(iter(parked))
                del parked[waiter]
                if not waiter.settled:
                    waiter.promoted = True
                    waiter.wake()
                    return
            if self._dead is None and self.session.open_streams:
                self._helper_turn = True
                if self._helper is None:
                    start = self._helper = threading.Thread(
                        target=self._help, name="framedrpc-reader", daemon=True
                    )
                else:
                    self._wake_helper()
            else:
                self._reading = False
        if start is not None:
            start.start()

    def _wake_helper(self) -> None:
        try:
            self._helper_wake.release()
        except RuntimeError:  # released already: it will look at the flags
            pass

    def _help(self) -> None:
        """The helper thread: reads while streams are open and no caller
        waits to read (given the role by :meth:`_hand_off`)."""
        while True:
            with self._guard:
                turn, self._helper_turn = self._helper_turn, False
            if turn:
                try:
                    while self._dead is None and self.session.open_streams:
                        self._read(None)
                finally:
                    self._hand_off()
            if self._dead is not None:
                return
            self._helper_wake.acquire()

    def refresh(self) -> None:
        """If no thread is reading, reads (without waiting) what the server
        sent meanwhile: a shutdown notice or its close make
        :attr:`usable` false before the next call is sent here.

        Skipped when the socket was read less than ``_FRESH`` seconds ago:
        a notice sent since then is one that could as well have been on
        its way while the call was sent, a race that exists anyway (the
        server refuses such a call with ``ShuttingDown``)."""
        if self._reading or time.monotonic() - self._last_read < _FRESH:
            return
        with self._guard:
            if self._reading or self._dead is not None:
                return
            self._reading = True
        try:
            while self._dead is None and self._readable():
                if not self._read(0):
                    break
        finally:
            self._hand_off()

    def _readable(self) -> bool:
        if self._io.buffered():
            return True
        if self._poll is not None:
            return bool(self._poll.poll(0))
        return bool(select.select([self._sock], [], [], 0)[0])

    # ------------------------------------------------------------ reading --

    def _read(self, timeout: Optional[float]) -> bool:
        """One read of the socket, by the thread holding the reading role,
        waiting at most ``timeout`` seconds (``None``: no limit; ``0``:
        only what has arrived), and the frames it completes handled.
        ``False`` if nothing came within ``timeout``, or the connection
        ended."""
        try:
            if timeout == 0:
                data = self._io.recv(_MSG_DONTWAIT)
            elif _TIMEVAL is not None:
                self._limit_reads(timeout)
                data = self._io.recv()
            else:
                if timeout is not None and not self._io.buffered():
                    if not select.select([self._sock], [], [], timeout)[0]:
                        return False
                data = self._io.recv()
        except BlockingIOError:  # the time limit (SO_RCVTIMEO), or nothing yet
            return False
        except OSError as e:
            self._reader_failed(e)
            return False
        if not data:
            self._reader_failed(None)
            return False
        self._last_read = time.monotonic()
        try:
            session = self.session
            for body in self._decoder.feed(data):
                for reply in session.receive(body):
                    self.send(reply)
        except (ProtocolError, OSError) as e:
            self._reader_failed(e)
            return False
        except Exception as e:  # a bug in a notification callback, say; never hang the callers
            self._reader_failed(ProtocolError(f"reading the connection failed: {e!r}"))
            return False
        return True

    def _limit_reads(self, timeout: Optional[float]) -> None:
        """Sets SO_RCVTIMEO for a read of at most ``timeout`` seconds,
        unless the one set already ends no more than ``_READ_SLACK``
        later and not much sooner (a read that stops early only loops):
        each call's deadline is a little nearer than the last one's, and
        this saves a system call per read."""
        limit = self._read_limit
        if timeout is None:
            if limit is None:
                return
            value = (0, 0)  # no limit
        else:
            timeout = max(timeout, 1e-6)
            if limit is not None and limit - _READ_SLACK <= timeout <= 2 * limit:
                return
            seconds = int(timeout)
            micros = int((timeout - seconds) * 1e6)
            value = (seconds, micros if seconds or micros else 1)  # (0, 0) would mean no limit
        assert _TIMEVAL is not None
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(*value))
        self._read_limit = timeout

    def _reader_failed(self, error: Optional[BaseException]) -> None:
        if error is None:
            if self._decoder.pending_bytes:
                error = ConnectionResetError("the server closed the connection in the middle of a frame")
            else:
                error = ConnectionResetError("the server closed the connection")
        if self._closed_here:
            error = ConnectionAbortedError("the connection was closed by the client")
        elif self.session.closing_error is not None:
            error = self.session.closing_error
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
        with self._guard:
            if self._helper is not None:
                self._wake_helper()  # to end it


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

