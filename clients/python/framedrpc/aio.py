"""The asyncio client: ``proxy = await aconnect(url)``, then
``await proxy.add(2, 3)``.

It shares the sans-IO core (:mod:`framedrpc.core`) with the threaded
client: the same frames, ids, batches and error classes. Over ``tcp://``
and ``tls://`` one connection carries every call, read by one task.
Cancelling a call's task sends ``rpc.cancel``. Over ``http://`` each call
is a POST run in a worker thread (cancelling it cannot stop the server).
"""

import asyncio
import collections
import math
import time
from typing import Any, Deque, Generic, List, Optional, Tuple, TypeVar

from .client import DEFAULT_TIMEOUT, _UNSET, Client, streaming_methods
from .core import DEFAULT_MAX_FRAME, DEFAULT_WINDOW, Catalog, FrameDecoder, Session, encode_frame
from .errors import DeadlineExceeded, MethodNotFound, ProtocolError, Unauthorized, token_hint
from .proxy import Namespace, tree_of
from .transport import Address, fresh, naming, tls_context

__all__ = ["aconnect", "AsyncClient", "AsyncProxy", "AsyncStream"]

T = TypeVar("T")


class _Waiter:
    __slots__ = ("future", "on_notification")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_notification: Any = None) -> None:
        self.future = loop.create_future()
        self.on_notification = on_notification

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def reject(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _StreamBuffer:
    """A stream's sink for the reading task (same event loop)."""

    __slots__ = ("items", "end", "ended", "wakeup")

    def __init__(self) -> None:
        self.items: Deque[Tuple[Any, int]] = collections.deque()
        self.end: Optional[BaseException] = None
        self.ended = False
        self.wakeup = asyncio.Event()

    def on_item(self, value: Any, size: int) -> None:
        self.items.append((value, size))
        self.wakeup.set()

    def on_end(self, error: Optional[BaseException]) -> None:
        if not self.ended:
            self.ended = True
            self.end = error
        self.wakeup.set()


class AsyncStream(Generic[T]):
    """The asyncio :class:`framedrpc.Stream`: ``async for event in await
    aproxy.live.watch(): ...``, or ``async with await aproxy.live.watch()
    as events:``. The same semantics: items in order, credit granted as
    they are read, an error end raised, a lost connection a
    ``ConnectionError``; :meth:`aclose` (or leaving the ``async with``
    block) sends ``rpc.unsubscribe`` and waits, at most ``close_timeout``
    seconds (the client's timeout), until the server confirms it has let
    the stream go; ``close`` (no ``await``) and dropping the stream after
    a ``break`` send it without waiting; ``idle_timeout`` raises
    :class:`DeadlineExceeded`."""

    def __init__(
        self, conn: "_Connection", method: str, stream_id: int, buffer: _StreamBuffer,
        window: int, idle_timeout: Optional[float] = None, close_timeout: Optional[float] = 30.0,
    ) -> None:
        self.method = method
        self.id = stream_id
        self.window = window
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        self._conn = conn
        self._buffer = buffer
        self._closed = False

    def __aiter__(self) -> "AsyncStream[T]":
        return self

    async def __anext__(self) -> T:
        buffer = self._buffer
        if self._closed:
            raise StopAsyncIteration
        if not buffer.items and not buffer.ended:
            credit = self._conn.session.starved(self.id)  # see StreamCredit.starved
            if credit is not None:
                try:
                    self._conn.send(credit)
                except OSError:
                    pass
        while not buffer.items and not buffer.ended:
            buffer.wakeup.clear()
            try:
                await asyncio.wait_for(buffer.wakeup.wait(), self.idle_timeout)
            except asyncio.TimeoutError:
                self.close()
                raise DeadlineExceeded(
                    -32002, f"no item of the stream `{self.method}` within {self.idle_timeout} s (idle timeout)",
                    local=True,
                ) from None
            if self._closed:
                raise StopAsyncIteration
        if buffer.items:
            value, size = buffer.items.popleft()
            credit = self._conn.session.consumed(self.id, size)
            if credit is not None:
                try:
                    self._conn.send(credit)
                except OSError:
                    pass
            return value  # type: ignore[no-any-return]
        self._closed = True
        error, buffer.end = buffer.end, None
        if error is not None:
            raise fresh(error)
        raise StopAsyncIteration

    def close(self) -> None:
        """Ends the stream here and on the server (``rpc.unsubscribe``),
        unless it has ended. Idempotent; needs no ``await``, and so does not
        wait for the server to confirm: use :meth:`aclose` for that."""
        if not self._stop():
            return
        body = self._conn.session.unsubscribe(self.id)
        if body is not None:
            try:
                self._conn.send(body)
            except (OSError, RuntimeError):  # RuntimeError: the event loop is closed
                pass

    def _stop(self) -> bool:
        if self._closed:
            return False
        self._closed = True
        self._buffer.items.clear()
        self._buffer.wakeup.set()
        return True

    async def aclose(self) -> None:
        """Ends the stream as :meth:`close`, then waits, at most
        ``close_timeout`` seconds, for the server's answer to
        ``rpc.unsubscribe``: it answers once the handler's stream is
        dropped. A lost connection ends the wait. Idempotent."""
        if not self._stop():
            return
        waiter = _Waiter(asyncio.get_running_loop())
        pending = self._conn.session.unsubscribe_request(self.id, waiter)
        if pending is None:
            return
        request_id, body = pending
        try:
            self._conn.send(body)
        except (OSError, RuntimeError):
            self._conn.session.forget(request_id)
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.close_timeout)
        except asyncio.TimeoutError:
            self._conn.session.forget(request_id)
        except Exception:  # the answer was an error, or the connection was lost: it is over either way
            pass

    @property
    def closed(self) -> bool:
        """True once the stream has ended, failed or been closed."""
        return self._closed

    async def __aenter__(self) -> "AsyncStream[T]":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<AsyncStream {self.method} id={self.id}{' closed' if self._closed else ''}>"


def _budget_ms(deadline: Optional[float]) -> Optional[int]:
    return None if deadline is None else max(0, math.ceil((deadline - time.monotonic()) * 1000))


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int) -> None:
        self.reader = reader
        self.writer = writer
        self.session = Session(max_frame)
        self.decoder = FrameDecoder(max_frame)
        self.dead: Optional[BaseException] = None
        self.task = asyncio.ensure_future(self._read_loop())

    @property
    def usable(self) -> bool:
        return self.dead is None and not self.session.draining

    def send(self, body: bytes) -> None:
        if self.dead is not None:
            raise fresh(self.dead)
        self.writer.write(encode_frame(body))

    async def _read_loop(self) -> None:
        error: BaseException
        try:
            while True:
                data = await self.reader.read(256 * 1024)
                if not data:
                    break
                for body in self.decoder.feed(data):
                    for reply in self.session.receive(body):
                        self.send(reply)
            error = ConnectionResetError(
                "the server closed the connection" + (" in the middle of a frame" if self.decoder.pending_bytes else "")
            )
        except asyncio.CancelledError:
            error = ConnectionAbortedError("the connection was closed by the client")
        except (ProtocolError, OSError) as e:
            error = e
        if self.session.closing_error is not None and not isinstance(error, ConnectionAbortedError):
            error = self.session.closing_error
        self.end(error)

    def end(self, error: BaseException) -> None:
        if self.dead is None:
            self.dead = error
        self.writer.close()
        dead = self.dead
        self.session.fail_all(lambda: fresh(dead))


class AsyncClient:
    """The asyncio counterpart of :class:`framedrpc.Client`, with the same
    arguments; every method is a coroutine. Must be used from one event
    loop."""

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
        self._sync: Optional[Client] = None
        if not self.address.framed:
            self._sync = Client(
                url, token=token, ssl_context=self._context, timeout=timeout,
                connect_timeout=connect_timeout, max_frame_size=max_frame_size,
            )
        self._conn: Optional[_Connection] = None
        self._dial: Optional[asyncio.Lock] = None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        if self._dial is None:
            self._dial = asyncio.Lock()
        async with self._dial:
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.address.host, self.address.port, ssl=self._context,
                        server_hostname=self.address.host if self._context else None,
                    ),
                    self.connect_timeout,
                )
            except OSError as e:
                raise naming(self.address, e) from e
            conn = _Connection(reader, writer, self.max_frame_size)
            if self.token is not None:
                try:
                    await self._framed_call(conn, "rpc.auth", {"token": self.token}, self.connect_timeout, None)
                except BaseException:
                    conn.task.cancel()
                    conn.end(ConnectionAbortedError("authentication failed"))
                    raise
            self._conn = conn
            return conn

    async def call(
        self, method: str, params: Any = None, *, timeout: Any = _UNSET, on_notification: Any = None
    ) -> Any:
        """As :meth:`framedrpc.Client.call`. Cancelling the awaiting task
        sends ``rpc.cancel`` (framed transports), so the server stops the
        method."""
        timeout = self.timeout if timeout is _UNSET else timeout
        if self._sync is not None:
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: self._sync.call(method, params, timeout=timeout)  # type: ignore[union-attr]
            )
        conn = await self._connection()
        try:
            return await self._framed_call(conn, method, params, timeout, on_notification)
        except Unauthorized as e:
            if self.token is None:
                raise token_hint(e) from None
            raise

    async def _framed_call(
        self, conn: _Connection, method: str, params: Any, timeout: Optional[float], on_notification: Any
    ) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter(asyncio.get_running_loop(), on_notification)
        request_id, body = conn.session.request(method, params, waiter, _budget_ms(deadline))
        try:
            conn.send(body)
        except OSError:
            conn.session.forget(request_id)
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            if conn.session.forget(request_id):
                self._cancel(conn, request_id)
            raise DeadlineExceeded(
                -32002, f"deadline exceeded: no answer to `{method}` within {timeout} s (client timeout)", local=True
            ) from None
        except asyncio.CancelledError:
            if conn.session.forget(request_id):
                self._cancel(conn, request_id)
            raise

    async def stream(
        self,
        method: str,
        params: Any = None,
        *,
        credit: Optional[int] = None,
        timeout: Any = _UNSET,
        idle_timeout: Optional[float] = None,
    ) -> "AsyncStream[Any]":
        """As :meth:`framedrpc.Client.stream`: opens a stream and returns
        an :class:`AsyncStream` (``async for``). Cancelling the task while
        the stream opens sends ``rpc.cancel``."""
        if self._sync is not None:
            raise ValueError(f"streams need a framed connection (tcp:// or tls://), not {self.address.scheme}://")
        timeout = self.timeout if timeout is _UNSET else timeout
        conn = await self._connection()
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter(asyncio.get_running_loop())
        buffer = _StreamBuffer()
        request_id, body = conn.session.stream_request(method, params, waiter, buffer, _budget_ms(deadline), credit)
        try:
            conn.send(body)
        except OSError:
            conn.session.forget(request_id)
            raise
        try:
            stream_id = await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            if conn.session.forget(request_id):
                self._cancel(conn, request_id)
            raise DeadlineExceeded(
                -32002, f"deadline exceeded: no answer to `{method}` within {timeout} s (client timeout)", local=True
            ) from None
        except asyncio.CancelledError:
            if conn.session.forget(request_id):
                self._cancel(conn, request_id)
            elif waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                # Opened just as we were cancelled: nobody will read it.
                unsubscribe = conn.session.unsubscribe(waiter.future.result())
                if unsubscribe is not None:
                    conn.send(unsubscribe)
            raise
        return AsyncStream(
            conn, method, stream_id, buffer, DEFAULT_WINDOW if credit is None else credit, idle_timeout, timeout
        )

    @staticmethod
    def _cancel(conn: _Connection, request_id: Any) -> None:
        try:
            conn.send(conn.session.cancel(request_id))
        except OSError:
            pass

    async def notify(self, method: str, params: Any = None) -> None:
        """Sends a notification."""
        if self._sync is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._sync.notify, method, params)
            return
        conn = await self._connection()
        conn.send(conn.session.notification(method, params))
        await conn.writer.drain()

    async def send_batch(self, entries: List["AsyncPendingCall"], timeout: Any = _UNSET) -> None:
        """Sends ``entries`` as one batch and waits for its answer."""
        timeout = self.timeout if timeout is _UNSET else timeout
        loop = asyncio.get_running_loop()
        if self._sync is not None:
            from .client import PendingCall

            calls = [PendingCall(c.method, c.params, c.notification) for c in entries]
            await loop.run_in_executor(None, lambda: self._sync.send_batch(calls, timeout))  # type: ignore[union-attr]
            for mine, theirs in zip(entries, calls):
                theirs._sent = True
                if not mine.notification:
                    try:
                        mine._waiter.resolve(theirs.result())
                    except Exception as e:
                        mine._waiter.reject(e)
            return
        conn = await self._connection()
        deadline = None if timeout is None else time.monotonic() + timeout
        items = [(c.method, c.params, None if c.notification else c._waiter) for c in entries]
        ids, body = conn.session.batch(items, _budget_ms(deadline))
        conn.send(body)
        futures = [c._waiter.future for c in entries if not c.notification]
        if not futures:
            return
        done, _ = await asyncio.wait(futures, timeout=timeout)
        if len(done) < len(futures):
            for request_id, call in zip(ids, entries):
                if request_id is not None and conn.session.forget(request_id):
                    call._waiter.reject(DeadlineExceeded(-32002, f"no answer to the batch within {timeout} s", local=True))

    async def close(self) -> None:
        """Closes the connection; calls still waiting fail with ``ConnectionAbortedError``."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.task.cancel()
            conn.end(ConnectionAbortedError("the connection was closed by the client"))
        if self._sync is not None:
            self._sync.close()


class AsyncPendingCall:
    """One call of an :class:`AsyncBatch`; :meth:`result` after the block."""

    def __init__(self, method: str, params: Any, notification: bool = False) -> None:
        self.method = method
        self.params = params
        self.notification = notification
        self._waiter = _Waiter(asyncio.get_running_loop())

    def result(self) -> Any:
        """The result, or raises the call's error (``asyncio.InvalidStateError`` before the batch is sent)."""
        if self.notification:
            return None
        return self._waiter.future.result()


class AsyncBatch(Namespace):
    """``async with aproxy.batch() as b: x = b.add(1, 2)``; then ``x.result()``."""

    def __init__(self, client: AsyncClient, catalog: Optional[Catalog], timeout: Any) -> None:
        entries: List[AsyncPendingCall] = []
        streaming = streaming_methods(catalog)

        def invoke(method: str, params: Any) -> AsyncPendingCall:
            if method in streaming:
                raise TypeError(f"`{method}` is a streaming method: call it on its own, not in a batch")
            call = AsyncPendingCall(method, params)
            entries.append(call)
            return call

        super().__init__(tree_of(catalog), invoke)
        self.__dict__.update(_client=client, _entries=entries, _timeout=timeout)

    def notify(self, method: str, params: Any = None) -> None:
        """Adds a notification."""
        self.__dict__["_entries"].append(AsyncPendingCall(method, params, notification=True))

    async def __aenter__(self) -> "AsyncBatch":
        return self

    async def __aexit__(self, kind: Any, *rest: Any) -> None:
        if kind is None and self.__dict__["_entries"]:
            await self.__dict__["_client"].send_batch(self.__dict__["_entries"], self.__dict__["_timeout"])


class AsyncProxy(Namespace):
    """As :class:`framedrpc.Proxy`, but each remote method returns a
    coroutine: ``await aproxy.add(2, 3)``."""

    def __init__(self, client: AsyncClient, catalog: Optional[Catalog], timeout: Any = _UNSET) -> None:
        streaming = streaming_methods(catalog)

        def invoke(method: str, params: Any) -> Any:
            if method in streaming:
                return client.stream(method, params, timeout=timeout)
            return client.call(method, params, timeout=timeout)

        super().__init__(tree_of(catalog), invoke)
        self.__dict__.update(client=client, catalog=catalog, _timeout=timeout)

    async def call(self, method: str, params: Any = None, *, timeout: Any = _UNSET, on_notification: Any = None) -> Any:
        """Calls a method by wire name, unchecked."""
        if timeout is _UNSET:
            timeout = self.__dict__["_timeout"]
        return await self.__dict__["client"].call(method, params, timeout=timeout, on_notification=on_notification)

    async def stream(
        self, method: str, params: Any = None, *, credit: Optional[int] = None, timeout: Any = _UNSET,
        idle_timeout: Optional[float] = None,
    ) -> AsyncStream[Any]:
        """Opens a stream by wire name, unchecked, with options; see :meth:`AsyncClient.stream`."""
        if timeout is _UNSET:
            timeout = self.__dict__["_timeout"]
        return await self.__dict__["client"].stream(
            method, params, credit=credit, timeout=timeout, idle_timeout=idle_timeout
        )

    async def notify(self, method: str, params: Any = None) -> None:
        """Sends a notification."""
        await self.__dict__["client"].notify(method, params)

    def batch(self, timeout: Any = _UNSET) -> AsyncBatch:
        """An :class:`AsyncBatch` (``async with``)."""
        return AsyncBatch(self.__dict__["client"], self.__dict__["catalog"],
                          self.__dict__["_timeout"] if timeout is _UNSET else timeout)

    def with_timeout(self, timeout: Optional[float]) -> "AsyncProxy":
        """A proxy on the same connection whose calls have ``timeout`` seconds."""
        return AsyncProxy(self.__dict__["client"], self.__dict__["catalog"], timeout)

    async def close(self) -> None:
        """Closes the connection."""
        await self.__dict__["client"].close()

    async def __aenter__(self) -> "AsyncProxy":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def aconnect(url: str, *, discover_methods: bool = True, **options: Any) -> AsyncProxy:
    """The asyncio :func:`framedrpc.connect`: ``proxy = await aconnect(url)``."""
    client = AsyncClient(url, **options)
    catalog = None
    try:
        if discover_methods:
            try:
                catalog = Catalog(await client.call("rpc.discover"))
            except MethodNotFound:
                catalog = None
    except BaseException:
        await client.close()
        raise
    return AsyncProxy(client, catalog)
