"""The threaded client: :func:`connect` returns a :class:`Proxy`.

One proxy may be shared by any number of threads: over ``tcp://`` and
``tls://`` their calls are multiplexed on one connection and matched by
id, the answers read by the calling threads themselves (whichever is
waiting reads for all; see :class:`FramedConnection`); over ``http://``
and ``https://`` each call is a POST on a pooled keep-alive connection.
"""

import collections
import math
import socket
import threading
import time
from typing import Any, Callable, Deque, Generic, Iterator, List, Optional, Tuple, TypeVar

from .core import DEFAULT_MAX_FRAME, DEFAULT_WINDOW, Catalog
from .errors import DeadlineExceeded, MethodNotFound, Unauthorized, token_hint
from .proxy import Namespace, tree_of
from .transport import Address, FramedConnection, HttpTransport, fresh, tls_context
from .transport import Waiter as _Waiter

__all__ = ["connect", "Client", "Proxy", "Batch", "PendingCall", "Stream"]

T = TypeVar("T")

#: The default timeout of a call, in seconds (as the Rust client's).
DEFAULT_TIMEOUT = 30.0

_UNSET: Any = object()


class _StreamBuffer:
    """A stream's sink for the thread reading the connection: the items
    received and not yet read, and the end. Holds no reference to the
    :class:`Stream`, so dropping the stream (a ``break``) lets it be
    collected and unsubscribed."""

    __slots__ = ("condition", "items", "end", "ended")

    def __init__(self) -> None:
        self.condition = threading.Condition(threading.Lock())
        self.items: Deque[Tuple[Any, int]] = collections.deque()
        self.end: Optional[BaseException] = None
        self.ended = False

    def on_item(self, value: Any, size: int) -> None:
        with self.condition:
            self.items.append((value, size))
            self.condition.notify()

    def on_end(self, error: Optional[BaseException]) -> None:
        with self.condition:
            if not self.ended:
                self.ended = True
                self.end = error
            self.condition.notify()


class Stream(Generic[T]):
    """The items of a streaming method (``PROTOCOL.md``, "Streams"), as an
    iterator: ``for event in proxy.chat.join("sala", "ana"): ...``.

    - Items come in order. Iteration stops when the server ends the
      stream; an end with an error raises it (:class:`ApplicationError`
      with ``kind``, :class:`ShuttingDown`, ...); a lost connection raises
      a ``ConnectionError``.
    - Reading an item grants its bytes back to the server (``rpc.credit``,
      each time what was read reaches half the window, and when the items
      received run out), which then sends more: the server never has more than the window outstanding, so the
      items buffered here are bounded by it. A server that exceeds it
      breaks the protocol: the stream raises :class:`ProtocolError` and is
      unsubscribed.
    - :meth:`close` (or leaving a ``with`` block) ends it on the server
      (``rpc.unsubscribe``) and waits, at most ``close_timeout`` seconds
      (the client's timeout), until the server confirms: when it returns,
      the server has let the stream go (a chat room has forgotten the
      member). Dropping the stream (a ``break`` out of ``for ... in
      proxy.live.watch()``) also unsubscribes, but cannot wait: use
      ``with`` or :meth:`close` when what follows depends on the end.
    - ``idle_timeout``: seconds to wait for the next item or the end;
      then :class:`DeadlineExceeded` (a ``TimeoutError``) and the stream is
      closed. Default: no limit.

    Attributes:
        method (str): the streaming method.
        id (int): the stream's id on its connection, as the server named it.
        window (int): the credit window in bytes.
    """

    def __init__(
        self, conn: FramedConnection, method: str, stream_id: int, buffer: _StreamBuffer,
        window: int, idle_timeout: Optional[float] = None, close_timeout: Optional[float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.method = method
        self.id = stream_id
        self.window = window
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        self._conn = conn
        self._buffer = buffer
        self._closed = False

    def __iter__(self) -> "Stream[T]":
        return self

    def __next__(self) -> T:
        buffer = self._buffer
        with buffer.condition:
            starved = not (self._closed or buffer.items or buffer.ended)
        if starved:  # grant what was read before waiting (see StreamCredit.starved)
            credit = self._conn.session.starved(self.id)
            if credit is not None:
                self._conn.send_quietly(credit)
        with buffer.condition:
            ready = buffer.condition.wait_for(
                lambda: bool(self._closed or buffer.items or buffer.ended), self.idle_timeout
            )
            if self._closed:
                raise StopIteration
            if buffer.items:
                value, size = buffer.items.popleft()
            elif ready:  # the end
                self._closed = True
                error, buffer.end = buffer.end, None
                if error is not None:
                    raise fresh(error)
                raise StopIteration
        if not ready:
            self.close()
            raise DeadlineExceeded(
                -32002, f"no item of the stream `{self.method}` within {self.idle_timeout} s (idle timeout)", local=True
            )
        credit = self._conn.session.consumed(self.id, size)
        if credit is not None:
            self._conn.send_quietly(credit)
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Ends the stream here and on the server (``rpc.unsubscribe``),
        unless it has ended; items not yet read are dropped, and a thread
        waiting in ``next()`` stops. Then waits, at most ``close_timeout``
        seconds, for the server's answer: it answers once the handler's
        stream is dropped. A lost connection ends the wait (the server
        drops the connection's streams too). Idempotent."""
        if not self._stop():
            return
        waiter = _Waiter()
        pending = self._conn.session.unsubscribe_request(self.id, waiter)
        if pending is None:  # it had ended: nothing to wait for
            return
        request_id, body = pending
        try:
            self._conn.send(body)
        except OSError:
            self._conn.session.forget(request_id)
            return
        timeout = self.close_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            settled = self._conn.wait(waiter, deadline)
        except OSError:
            settled = True
        if not settled:
            self._conn.session.forget(request_id)

    def _stop(self) -> bool:
        """Marks the stream closed here; whether it was open."""
        with self._buffer.condition:
            if self._closed:
                return False
            self._closed = True
            self._buffer.items.clear()
            self._buffer.condition.notify_all()
        return True

    @property
    def closed(self) -> bool:
        """True once the stream has ended, failed or been closed."""
        return self._closed

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # May run on any thread, the connection's reader included: send the
        # notification, never wait here.
        try:
            if self._stop():
                body = self._conn.session.unsubscribe(self.id)
                if body is not None:
                    self._conn.send_quietly(body)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<Stream {self.method} id={self.id}{' closed' if self._closed else ''}>"


def _budget_ms(deadline: Optional[float]) -> Optional[int]:
    if deadline is None:
        return None
    return max(0, math.ceil((deadline - time.monotonic()) * 1000))


def _local_timeout(method: str, timeout: Optional[float]) -> DeadlineExceeded:
    return DeadlineExceeded(
        -32002, f"deadline exceeded: no answer to `{method}` within {timeout} s (client timeout)", local=True
    )


class Client:
    """A connection to one server, without the attribute sugar of
    :class:`Proxy` (which wraps one: ``proxy.client``).

    Args:
        url: ``tcp://HOST:PORT``, ``tls://HOST:PORT``, ``http://HOST:PORT[/PATH]``
            or ``https://...`` (the path defaults to ``/rpc``).
        token: the server's token, if it requires one: sent with
            ``rpc.auth`` on every new framed connection, as
            ``Authorization: Bearer`` over HTTP.
        ca_file: a PEM file of the CA that signed the server's certificate
            (``tls://``, ``https://``); default: the system's CAs.
        ssl_context: a ready ``ssl.SSLContext`` instead of ``ca_file``.
        timeout: default seconds a call may take (30), sent as
            ``timeout_ms`` and enforced locally; ``None`` waits forever.
        connect_timeout: seconds to open a connection (10).
        max_frame_size: largest frame sent or accepted (16 MiB).

    Nothing is dialled until the first call. After the connection breaks
    (the server restarts, say) the calls in flight fail with a
    ``ConnectionError`` and the next call dials again.
    """

    def __init__(
        self,
        url: str,
        *,
        token: Optional[str] = None,
        ca_file: Optional[str] = None,
        ssl_context: Any = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        connect_timeout: Optional[float] = 10.0,
        max_frame_size: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.address = Address(url)
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame_size = max_frame_size
        self._context = tls_context(ca_file, ssl_context) if self.address.secure else None
        self._http: Optional[HttpTransport] = None
        if not self.address.framed:
            self._http = HttpTransport(self.address, self._context, token, connect_timeout, max_frame_size)
        self._conn: Optional[FramedConnection] = None
        self._dial_lock = threading.Lock()
        self._closed = False

    # --------------------------------------------------------- connection --

    def _connection(self) -> FramedConnection:
        conn = self._conn
        if conn is not None:
            conn.refresh()
            if conn.usable:
                return conn
        with self._dial_lock:
            if self._closed:
                raise ConnectionAbortedError("this client was closed")
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            conn = FramedConnection(self.address, self._context, self.connect_timeout, self.max_frame_size)
            if self.token is not None:
                try:
                    self._framed_call(conn, "rpc.auth", {"token": self.token}, self.connect_timeout)
                except BaseException:
                    conn.close()
                    raise
            self._conn = conn
            return conn

    def close(self) -> None:
        """Closes the connection(s). Calls still waiting fail with
        ``ConnectionAbortedError``; later calls too."""
        with self._dial_lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if self._http is not None:
            self._http.close()

    # -------------------------------------------------------------- calls --

    def _timeout(self, timeout: Any) -> Optional[float]:
        return self.timeout if timeout is _UNSET else timeout

    def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: Any = _UNSET,
        on_notification: Optional[Callable[[str, Any], None]] = None,
    ) -> Any:
        """Calls ``method`` with ``params`` (a list: by position; a dict: by
        name; ``None``: none) and returns its result.

        Args:
            timeout: seconds for this call (default: the client's); sent as
                ``timeout_ms``. When it passes without an answer the call
                raises :class:`DeadlineExceeded` (``local=True``) and
                ``rpc.cancel`` is sent.
            on_notification: called as ``f(method, params)`` for each
                notification the server sends during this call
                (``in_reply_to``; framed transports only), from the thread
                reading the connection at the time: this one, another
                caller's, or the helper that reads for open streams. It
                must not wait for another call on the same connection.

        Raises:
            RpcError: a subclass for the error the server answered.
            ConnectionError: the server could not be reached or closed the
                connection before answering (the call may or may not have run).
            RequestTooLarge, ValueError: the params could not be sent.
        """
        if self._closed:
            raise ConnectionAbortedError("this client was closed")
        timeout = self._timeout(timeout)
        try:
            if self._http is not None:
                return self._http_call(method, params, timeout)
            return self._framed_call(self._connection(), method, params, timeout, on_notification)
        except Unauthorized as e:
            if self.token is None:
                raise token_hint(e) from None
            raise

    def _framed_call(
        self,
        conn: FramedConnection,
        method: str,
        params: Any,
        timeout: Optional[float],
        on_notification: Optional[Callable[[str, Any], None]] = None,
    ) -> Any:
        if timeout is None:
            deadline = budget = None
        else:
            deadline = time.monotonic() + timeout
            budget = max(0, math.ceil(timeout * 1000))
        waiter = _Waiter(on_notification)
        session = conn.session
        request_id, body = session.request(method, params, waiter, budget)
        try:
            conn.send(body)
        except OSError:
            session.forget(request_id)
            raise
        try:
            settled = conn.wait(waiter, deadline)
        except BaseException:  # KeyboardInterrupt: stop the call on the server too
            if session.forget(request_id):
                conn.send_quietly(session.cancel(request_id))
            raise
        if not settled:
            if session.forget(request_id):
                conn.send_quietly(session.cancel(request_id))
                raise _local_timeout(method, timeout)
            # The answer arrived just now: another thread is resolving it.
            conn.wait(waiter, None)
        return waiter.outcome()

    def stream(
        self,
        method: str,
        params: Any = None,
        *,
        credit: Optional[int] = None,
        timeout: Any = _UNSET,
        idle_timeout: Optional[float] = None,
    ) -> "Stream[Any]":
        """Opens a stream of the streaming method ``method`` (params as for
        :meth:`call`) and returns it: iterate it for the items (see
        :class:`Stream`). Needs no discovery.

        Args:
            credit: the window in bytes (default: the server's, 256 KiB).
            timeout: seconds the opening may take (default: the client's).
            idle_timeout: seconds each item may take (default: no limit).

        Raises what :meth:`call` raises if the method refuses (its
        :class:`ApplicationError`, :class:`InvalidParams`, ...);
        ``ValueError`` over ``http://`` (no channel for items: use
        ``tcp://`` or ``tls://``).
        """
        if self._closed:
            raise ConnectionAbortedError("this client was closed")
        if self._http is not None:
            raise ValueError(f"streams need a framed connection (tcp:// or tls://), not {self.address.scheme}://")
        timeout = self._timeout(timeout)
        conn = self._connection()
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter()
        buffer = _StreamBuffer()
        request_id, body = conn.session.stream_request(method, params, waiter, buffer, _budget_ms(deadline), credit)
        try:
            conn.send(body)
        except OSError:
            conn.session.forget(request_id)
            raise
        try:
            settled = conn.wait(waiter, deadline)
        except BaseException:
            if conn.session.forget(request_id):
                conn.send_quietly(conn.session.cancel(request_id))
            raise
        if not settled:
            if conn.session.forget(request_id):
                conn.send_quietly(conn.session.cancel(request_id))
                raise _local_timeout(method, timeout)
            conn.wait(waiter, None)
        stream_id = waiter.outcome()
        return Stream(
            conn, method, stream_id, buffer, DEFAULT_WINDOW if credit is None else credit, idle_timeout, timeout
        )

    def _http_call(self, method: str, params: Any, timeout: Optional[float]) -> Any:
        from .core import Session

        assert self._http is not None
        session = Session(self.max_frame_size)
        waiter = _Waiter()
        deadline = None if timeout is None else time.monotonic() + timeout
        request_id, body = session.request(method, params, waiter, _budget_ms(deadline))
        try:
            answer = self._http.post(body, timeout)
        except (TimeoutError, socket.timeout) as e:  # socket.timeout: Python 3.9
            if isinstance(e, DeadlineExceeded):
                raise
            raise _local_timeout(method, timeout) from None
        if answer is None:
            raise ConnectionError(f"the server sent no answer (204) to the call of `{method}`")
        session.receive_message(answer)
        if not waiter.settled:
            raise ConnectionError(f"the server's answer does not answer the call of `{method}`: {answer!r}"[:300])
        return waiter.outcome()

    def notify(self, method: str, params: Any = None) -> None:
        """Sends a notification: the method runs and nothing comes back,
        not even an error. Raises only if it could not be sent."""
        if self._closed:
            raise ConnectionAbortedError("this client was closed")
        if self._http is not None:
            from .core import Session

            self._http.post(Session(self.max_frame_size).notification(method, params), self.timeout)
            return
        conn = self._connection()
        conn.send(conn.session.notification(method, params))

    def send_batch(self, entries: List["PendingCall"], timeout: Any = _UNSET) -> None:
        """Sends ``entries`` as one batch and waits (within ``timeout``) for
        the answer; each entry's :meth:`PendingCall.result` then gives its
        outcome. Used by :class:`Batch`."""
        timeout = self._timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        items = [(c.method, c.params, None if c.notification else c._waiter) for c in entries]
        if self._http is not None:
            from .core import Session

            session = Session(self.max_frame_size)
            _, body = session.batch(items, _budget_ms(deadline))
            try:
                answer = self._http.post(body, timeout)
            except (TimeoutError, socket.timeout) as e:  # socket.timeout: Python 3.9
                if isinstance(e, DeadlineExceeded):
                    raise
                raise _local_timeout("a batch", timeout) from None
            if answer is not None:
                session.receive_message(answer)
            session.fail_all(lambda: ConnectionError("the server's batch answer has no response for this call"))
            return
        conn = self._connection()
        ids, body = conn.session.batch(items, _budget_ms(deadline))
        try:
            conn.send(body)
        except OSError:
            for request_id in ids:
                if request_id is not None:
                    conn.session.forget(request_id)
            raise
        for request_id, call in zip(ids, entries):
            if request_id is None:
                continue
            try:
                settled = conn.wait(call._waiter, deadline)
            except BaseException:
                for other_id in ids:
                    if other_id is not None:
                        conn.session.forget(other_id)
                raise
            if not settled:
                # Batch members cannot be cancelled one by one (PROTOCOL.md);
                # stop waiting for all of them.
                for other_id, other in zip(ids, entries):
                    if other_id is not None and conn.session.forget(other_id):
                        other._waiter.reject(_local_timeout(other.method, timeout))
                conn.wait(call._waiter, None)


class PendingCall:
    """One call of a :class:`Batch`; its outcome is known once the batch
    has been sent (the ``with`` block has ended).

    Attributes:
        method (str), params: what is called.
        notification (bool): sent without an id; :meth:`result` is ``None``.
    """

    def __init__(self, method: str, params: Any, notification: bool = False) -> None:
        self.method = method
        self.params = params
        self.notification = notification
        self._waiter = _Waiter()
        self._sent = False

    def result(self) -> Any:
        """The call's result. Raises the call's :class:`RpcError` (or the
        batch's ``ConnectionError``/timeout); ``RuntimeError`` if the batch
        has not been sent yet."""
        if not self._sent:
            raise RuntimeError("the batch has not been sent yet: call result() after the `with` block")
        if self.notification:
            return None
        if not self._waiter.settled:
            raise RuntimeError("the batch was not answered")  # pragma: no cover - send_batch settles all
        return self._waiter.outcome()

    def exception(self) -> Optional[BaseException]:
        """The error :meth:`result` would raise, or ``None``
        (``RuntimeError`` if the batch has not been sent yet)."""
        if not self._sent:
            raise RuntimeError("the batch has not been sent yet: call exception() after the `with` block")
        try:
            self.result()
        except Exception as e:
            return e
        return None

    def __repr__(self) -> str:
        return f"<PendingCall {self.method} {'sent' if self._sent else 'queued'}>"


class Batch(Namespace):
    """Calls gathered and sent as one JSON-RPC batch (one frame, one answer).

    Use it as a context manager; the batch is sent when the block ends
    (not if it ends with an exception)::

        with proxy.batch() as b:
            x = b.add(1, 2)
            y = b.div(1, 0)
        x.result()   # 3.0
        y.result()   # raises ApplicationError

    Methods are checked like the proxy's. ``b.notify(method, params)``
    adds a notification; ``b.call(method, params)`` any method by name.
    A batch's members share its timeout and cannot be cancelled one by one.
    """

    def __init__(self, client: Client, catalog: Optional[Catalog], timeout: Any) -> None:
        entries: List[PendingCall] = []

        streaming = streaming_methods(catalog)

        def invoke(method: str, params: Any) -> PendingCall:
            if self.__dict__["_sent"]:
                raise RuntimeError("this batch has already been sent")
            if method in streaming:
                raise TypeError(f"`{method}` is a streaming method: call it on its own, not in a batch")
            call = PendingCall(method, params)
            entries.append(call)
            return call

        super().__init__(tree_of(catalog), invoke)
        self.__dict__.update(_client=client, _entries=entries, _timeout=timeout, _sent=False, _invoke=invoke)

    def call(self, method: str, params: Any = None) -> PendingCall:
        """Adds a call of ``method`` by its wire name, unchecked."""
        return self.__dict__["_invoke"](method, params)

    def notify(self, method: str, params: Any = None) -> PendingCall:
        """Adds a notification (no answer)."""
        call = PendingCall(method, params, notification=True)
        self.__dict__["_entries"].append(call)
        return call

    def send(self) -> None:
        """Sends the batch now and waits for its answer (the ``with`` block
        does this); a batch with no calls sends nothing."""
        if self.__dict__["_sent"]:
            raise RuntimeError("this batch has already been sent")
        self.__dict__["_sent"] = True
        entries = self.__dict__["_entries"]
        for call in entries:
            call._sent = True
        if not entries:
            return
        try:
            self.__dict__["_client"].send_batch(entries, self.__dict__["_timeout"])
        except Exception as e:
            for call in entries:
                if not call.notification and not call._waiter.settled:
                    call._waiter.reject(fresh(e))
            raise

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.send()


class Proxy(Namespace):
    """Remote methods as Python attributes, made by :func:`connect`.

    ``proxy.add(2, 3)`` calls by position, ``proxy.add(a=2, b=3)`` by name,
    ``proxy.calc.add(...)`` calls the wire name ``calc.add``. When the server
    described its methods (``rpc.discover``), ``dir(proxy)`` lists them,
    ``help(proxy.add)`` shows their signature and text, aliases work, and
    wrong arguments raise ``TypeError`` before anything is sent.

    The names below are the proxy's own; a remote method with one of these
    names is reached with ``proxy.call("name", params)``.
    """

    def __init__(self, client: Client, catalog: Optional[Catalog], timeout: Any = _UNSET) -> None:
        streaming = streaming_methods(catalog)

        def invoke(method: str, params: Any) -> Any:
            if method in streaming:
                return client.stream(method, params, timeout=timeout)
            return client.call(method, params, timeout=timeout)

        super().__init__(tree_of(catalog), invoke)
        self.__dict__.update(client=client, catalog=catalog, _timeout=timeout)

    def call(
        self, method: str, params: Any = None, *, timeout: Any = _UNSET, on_notification: Any = None
    ) -> Any:
        """Calls a method by its wire name, unchecked; see :meth:`Client.call`."""
        if timeout is _UNSET:
            timeout = self.__dict__["_timeout"]
        return self.__dict__["client"].call(method, params, timeout=timeout, on_notification=on_notification)

    def stream(
        self, method: str, params: Any = None, *, credit: Optional[int] = None, timeout: Any = _UNSET,
        idle_timeout: Optional[float] = None,
    ) -> Stream[Any]:
        """Opens a stream by the method's wire name, unchecked, with options
        (``credit``, ``idle_timeout``); see :meth:`Client.stream`."""
        if timeout is _UNSET:
            timeout = self.__dict__["_timeout"]
        return self.__dict__["client"].stream(method, params, credit=credit, timeout=timeout, idle_timeout=idle_timeout)

    def notify(self, method: str, params: Any = None) -> None:
        """Sends a notification (no answer, not even an error)."""
        self.__dict__["client"].notify(method, params)

    def batch(self, timeout: Any = _UNSET) -> Batch:
        """A :class:`Batch` of calls, sent as one frame when its ``with`` block ends."""
        if timeout is _UNSET:
            timeout = self.__dict__["_timeout"]
        return Batch(self.__dict__["client"], self.__dict__["catalog"], timeout)

    def with_timeout(self, timeout: Optional[float]) -> "Proxy":
        """A proxy on the same connection whose calls have ``timeout``
        seconds (``None``: no limit): ``proxy.with_timeout(0.5).sleep(2000)``."""
        return Proxy(self.__dict__["client"], self.__dict__["catalog"], timeout)

    def close(self) -> None:
        """Closes the connection (see :meth:`Client.close`)."""
        self.__dict__["client"].close()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def streaming_methods(catalog: Optional[Catalog]) -> "frozenset[str]":
    """The wire names of the streaming methods (``"x-stream": true``) of
    ``catalog``, aliases included."""
    if catalog is None:
        return frozenset()
    return frozenset(name for name, spec in catalog.methods.items() if spec.stream)


def discover(client: Client) -> Optional[Catalog]:
    """The server's methods (``rpc.discover``), or ``None`` if it does not
    describe itself (``-32601``)."""
    try:
        document = client.call("rpc.discover")
    except MethodNotFound:
        return None
    return Catalog(document)


def connect(url: str, *, discover_methods: bool = True, **options: Any) -> Proxy:
    """Connects to the server at ``url`` and returns a :class:`Proxy`.

    ``url`` is ``tcp://HOST:PORT``, ``tls://HOST:PORT``, ``http://HOST:PORT``
    or ``https://HOST:PORT``. ``options`` are those of :class:`Client`
    (``token``, ``ca_file``, ``ssl_context``, ``timeout``,
    ``connect_timeout``, ``max_frame_size``).

    The server's methods are fetched at once (``rpc.discover``) unless
    ``discover_methods`` is false; then any attribute is a method, unchecked.

    Raises ``ConnectionError`` (e.g. ``ConnectionRefusedError``) if the
    server cannot be reached, :class:`Unauthorized` for a wrong token,
    ``ssl.SSLCertVerificationError`` for a certificate the CA did not sign.
    """
    client = Client(url, **options)
    try:
        catalog = discover(client) if discover_methods else None
    except BaseException:
        client.close()
        raise
    return Proxy(client, catalog)

