"""The sans-IO core shared by the threaded and the asyncio clients.

Nothing here touches a socket or a clock. It turns calls into bytes and
bytes into resolved calls:

* :func:`encode_frame` and :class:`FrameDecoder`: the 4-byte big-endian
  length prefix of ``PROTOCOL.md`` ("Framing");
* :class:`Session`: one connection's state: request ids, the calls waiting
  for an answer (matched by id, in any order), batches, the ``rpc.shutdown``
  notice, the server's own requests (``rpc.ping``) and the notifications a
  method sends during a call (``in_reply_to``);
* :class:`MethodSpec` and :class:`Catalog`: the methods of an OpenRPC
  document (``rpc.discover``) with Python signatures, so arguments are
  checked locally before anything is sent.

A waiting call is represented by any object with ``resolve(value)``,
``reject(exception)`` and an ``on_notification`` attribute (a callable or
``None``); the I/O layers supply their own (a lock for threads, a future for
asyncio).

Streams (``PROTOCOL.md``, "Streams"): :meth:`Session.stream_request`
opens one with a *sink* (any object with ``on_item(value, size)`` and
``on_end(error_or_None)``); the stream id is registered the moment the
opening response is read, before the next frame, so items that follow at
once are not lost. :class:`StreamCredit` keeps the byte accounting of the
credit window; the I/O layers call :meth:`Session.consumed` as the
application reads an item and send the ``rpc.credit`` body it returns.
"""

import inspect
import itertools
import json
import keyword
import struct
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from .errors import (
    ProtocolError,
    RequestTooLarge,
    RpcError,
    ServerError,
    error_from_object,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "encode_frame",
    "FrameDecoder",
    "Session",
    "MethodSpec",
    "Catalog",
    "StreamCredit",
    "DEFAULT_WINDOW",
    "schema_annotation",
]

#: A stream's window when the opening request names none (256 KiB).
DEFAULT_WINDOW = 262144

#: The default maximum frame body, in bytes (16 MiB), as on the server.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

_HEADER = struct.Struct(">I")
_TLS_RECORD_FIRST = range(0x14, 0x18)


def encode_frame(body: bytes) -> bytes:
    """``body`` with its 4-byte big-endian length in front."""
    return _HEADER.pack(len(body)) + body


# allow_nan=False: JSON has no NaN or infinity; refuse them locally
# (ValueError) rather than send text the server cannot parse. One encoder
# for every message: json.dumps with non-default options builds a new one
# per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _dumps(message: Any) -> bytes:
    return _ENCODER.encode(message).encode("utf-8")


# What _ENCODER.encode runs, built once rather than per call (its
# iterencode makes a new C encoder each time), without the
# circular-reference table: a circular value exceeds the recursion limit
# instead, reported as the same ValueError. None without the _json
# accelerator.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encoder = (
    _c_make_encoder(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    if _c_make_encoder is not None
    else None
)


def _encode(value: Any) -> str:
    """``_ENCODER.encode(value)``."""
    if _c_encoder is None:  # pragma: no cover
        return _ENCODER.encode(value)
    try:
        return "".join(_c_encoder(value, 0))
    except RecursionError:
        raise ValueError("Circular reference detected (or values nested too deep to encode)") from None


# One decoder for every frame: ``json.loads`` of bytes first guesses the
# encoding in Python code; the protocol's frames are UTF-8 (RFC 8259).
_DECODER = json.JSONDecoder()
_raw_decode = _DECODER.raw_decode


def _decode(text: str) -> Any:
    """``json.loads(text)``: the value alone (the common case, no white
    space around it) without the two white-space scans of ``decode``."""
    try:
        value, end = _raw_decode(text)
        if end == len(text):
            return value
    except ValueError:
        pass
    return _DECODER.decode(text)  # white space around it, or the error to raise

# The start of a request, up to its id, by method name: most programs call
# few methods, many times. Bounded, for programs that call many names.
_HEADS: Dict[str, str] = {}
_HEADS_MAX = 1024


def _head(method: Any) -> str:
    head = _HEADS.get(method) if type(method) is str else None
    if head is None:
        head = '{"jsonrpc":"2.0","method":' + _encode(method) + ',"id":'
        if type(method) is str and len(_HEADS) < _HEADS_MAX:
            _HEADS[method] = head
    return head


class FrameDecoder:
    """Splits a byte stream into frame bodies.

    Feed it whatever a read returned; :meth:`feed` returns the bodies of
    every frame completed so far (possibly none, possibly several).

    Raises :class:`ProtocolError` for a header announcing more than
    ``max_frame`` bytes, with a hint when the bytes look like TLS or HTTP
    (a plain client on a TLS port, or an HTTP server).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[bytes]:
        """Adds ``data`` (copied: a reused read buffer is fine); returns the
        bodies of the frames it completed, in order."""
        buffer = self._buffer
        buffer += data
        bodies = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > self.max_frame:
                raise ProtocolError(self._oversize(bytes(buffer[start : start + 4]), length))
            if end - start - 4 < length:
                break
            bodies.append(bytes(buffer[start + 4 : start + 4 + length]))
            start += 4 + length
        if start:
            del buffer[:start]
        return bodies

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held so far (0 between frames)."""
        return len(self._buffer)

    def _oversize(self, header: bytes, length: int) -> str:
        if header[0] in _TLS_RECORD_FIRST and header[1] == 0x03:
            return (
                "the peer speaks TLS (its bytes start a TLS record, not a frame); "
                "connect with tls:// and a CA file"
            )
        if header in (b"HTTP", b"<!DO", b"<htm"):
            return "the peer speaks HTTP, not length-prefixed frames; connect with http://"
        return (
            f"frame of {length} bytes from the server exceeds the maximum of {self.max_frame} bytes; "
            "the connection is closed"
        )


class _Pending:
    __slots__ = ("waiter", "group", "stream")

    def __init__(self, waiter: Any, group: Optional[List[Any]], stream: Optional["_OpenStream"] = None) -> None:
        self.waiter = waiter
        self.group = group
        self.stream = stream


# The frame the Rust server sends for an item, up to the value: with it the
# value's bytes are read off the body exactly (see _item_size).
_ITEM_PREFIX = b'{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":'


def _item_size(body: Optional[bytes], value: Any) -> Tuple[int, bool]:
    """The bytes of an item's ``value`` as sent, and whether that is exact.

    For the frames the Rust server writes (``{"jsonrpc":"2.0","method":
    "rpc.item","params":{"stream":N,"value":V}}``) the raw bytes of ``V``
    are measured in ``body``. Otherwise the value is re-encoded compactly
    (``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``), which
    is what serde_json writes for strings, integers, booleans, null, arrays
    and objects in practice, but may differ for floats (``1e+20`` against
    ``1e20``) or escapes: an approximation.
    """
    if body is not None and body.startswith(_ITEM_PREFIX) and body.endswith(b"}}"):
        i = len(_ITEM_PREFIX)
        while i < len(body) and 48 <= body[i] <= 57:
            i += 1
        if body.startswith(b',"value":', i):
            return len(body) - (i + 9) - 2, True
    try:
        return len(_dumps(value)), False
    except ValueError:
        return 0, False


class StreamCredit:
    """The client's side of one stream's credit window (sans-IO).

    ``received`` is written only by the reader (items as they arrive),
    ``granted`` only by the consumer (credit sent back), so the two threads
    of the threaded client need no lock: the consumer counts a grant before
    sending it, and the server sends more only after reading it.

    Attributes:
        window (int): the stream's window in bytes.
        received (int): bytes of items received so far.
        granted (int): bytes granted back (``rpc.credit``) so far.
        unacknowledged (int): bytes read by the application, not yet granted.
    """

    __slots__ = ("window", "received", "granted", "unacknowledged")

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self.received = 0
        self.granted = 0
        self.unacknowledged = 0

    def arrived(self, size: int, exact: bool = True) -> bool:
        """Counts an item of ``size`` bytes; ``False`` if the server had no
        credit for it (more than the window outstanding, except an item
        sent when nothing was outstanding). Sizes that are not exact are
        counted but never judged."""
        outstanding = self.received - self.granted
        self.received += size
        return not exact or outstanding <= 0 or outstanding + size <= self.window

    def read(self, size: int) -> int:
        """The application read an item of ``size`` bytes: the bytes to
        grant now (0: none yet). As the Rust client: what has been read,
        each time that reaches half the window (at least 1 byte)."""
        self.unacknowledged += size
        if self.unacknowledged >= max(self.window // 2, 1):
            grant, self.unacknowledged = self.unacknowledged, 0
            self.granted += grant
            return grant
        return 0

    def starved(self) -> int:
        """The application has read every item received and waits for
        more: the bytes to grant now (what was read and not yet granted).

        Granting only at half the window can stall: after a small item the
        server's allowance may be short of a larger next one (it waits
        for ``min(item, window)`` bytes) while what was read is short of
        half the window. Granting the rest when out of items makes the
        whole window available again, so the next item always fits."""
        grant, self.unacknowledged = self.unacknowledged, 0
        self.granted += grant
        return grant


class _OpenStream:
    __slots__ = ("sink", "credit", "id")

    def __init__(self, sink: Any, credit: StreamCredit) -> None:
        self.sink = sink
        self.credit = credit
        self.id: Any = None


class Session:
    """One connection's protocol state.

    Not thread-safe by itself beyond what CPython's atomic dict operations
    give; the threaded client registers calls from many threads and
    resolves them from whichever thread reads the connection (one at a
    time), which is safe because each pending call is popped exactly once (by :meth:`receive`, :meth:`forget`
    or :meth:`fail_all`).

    Attributes:
        draining (bool): the server sent ``rpc.shutdown``: send no new calls
            here (the client dials a new connection for them).
        closing_error (RpcError or None): an error the server sent with
            ``"id": null`` (e.g. ``-32001``, ``-32004``) just before it closes;
            it becomes the error of the calls still waiting.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.draining = False
        self.closing_error: Optional[RpcError] = None
        self._ids = itertools.count(1)
        self._pending: Dict[Any, _Pending] = {}
        self._streams: Dict[Any, _OpenStream] = {}
        self._abandoned: set = set()  # ids of stream openings given up on

    # ------------------------------------------------------------ sending --

    def _new_id(self) -> int:
        # itertools.count's __next__ is atomic under the GIL: threads that
        # register calls at once never get the same id.
        return next(self._ids)

    def _check_size(self, body: bytes) -> bytes:
        if len(body) > self.max_frame:
            raise RequestTooLarge(
                f"the request is {len(body)} bytes, over the maximum frame of {self.max_frame} bytes; not sent"
            )
        return body

    def request(
        self, method: str, params: Any, waiter: Any, timeout_ms: Optional[int] = None
    ) -> Tuple[int, bytes]:
        """Registers ``waiter`` for a new request; returns ``(id, body)``.

        ``params`` is a list, a dict or ``None`` (no ``params`` member).
        Raises :class:`RequestTooLarge` or ``ValueError`` (NaN, unserializable
        values) without registering anything.
        """
        request_id = next(self._ids)
        # The bytes json.dumps would write for {"jsonrpc", "method", "id",
        # "params", "timeout_ms"}, without building the dict.
        text = _head(method) + str(request_id)
        if params is not None:
            text += ',"params":' + _encode(params)
        if timeout_ms is not None:
            text += ',"timeout_ms":' + (str(timeout_ms) if type(timeout_ms) is int else _encode(timeout_ms))
        body = (text + "}").encode("utf-8")
        if len(body) > self.max_frame:
            self._check_size(body)
        self._pending[request_id] = _Pending(waiter, None)
        return request_id, body

    def stream_request(
        self,
        method: str,
        params: Any,
        waiter: Any,
        sink: Any,
        timeout_ms: Optional[int] = None,
        credit: Optional[int] = None,
    ) -> Tuple[int, bytes]:
        """As :meth:`request`, for a streaming method: ``credit`` is the
        window in bytes (``None``: the server's default, 256 KiB).

        When the response opens the stream (``{"stream": N}``), ``N`` is
        registered at once and ``waiter`` resolves with ``N``; the items
        and the end then go to ``sink.on_item(value, size)`` and
        ``sink.on_end(error_or_None)``, from the thread (or task) that
        reads the connection. An error response rejects ``waiter``.
        """
        if credit is not None and (not isinstance(credit, int) or isinstance(credit, bool) or not 0 <= credit < 2**64):
            raise ValueError(f"credit must be a whole number of bytes from 0 to 2**64-1, not {credit!r}")
        request_id = self._new_id()
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params is not None:
            message["params"] = params
        if timeout_ms is not None:
            message["timeout_ms"] = timeout_ms
        if credit is not None:
            message["credit"] = credit
        body = self._check_size(_dumps(message))
        stream = _OpenStream(sink, StreamCredit(DEFAULT_WINDOW if credit is None else credit))
        self._pending[request_id] = _Pending(waiter, None, stream)
        return request_id, body

    def consumed(self, stream_id: Any, size: int) -> Optional[bytes]:
        """The application read an item of ``size`` bytes from the stream:
        the ``rpc.credit`` body to send now, or ``None``."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        grant = stream.credit.read(size)
        if not grant:
            return None
        return _dumps({"jsonrpc": "2.0", "method": "rpc.credit", "params": {"stream": stream_id, "bytes": grant}})

    def starved(self, stream_id: Any) -> Optional[bytes]:
        """The application has read every item of the stream received so
        far and waits for more: the ``rpc.credit`` body to send first (what
        was read and not yet granted; see :meth:`StreamCredit.starved`), or
        ``None``."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        grant = stream.credit.starved()
        if not grant:
            return None
        return _dumps({"jsonrpc": "2.0", "method": "rpc.credit", "params": {"stream": stream_id, "bytes": grant}})

    def unsubscribe(self, stream_id: Any) -> Optional[bytes]:
        """Stops the stream here (its later items are ignored): the
        ``rpc.unsubscribe`` notification to send, or ``None`` if the stream
        had already ended."""
        if self._streams.pop(stream_id, None) is None:
            return None
        return _dumps({"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"stream": stream_id}})

    def unsubscribe_request(self, stream_id: Any, waiter: Any) -> Optional[Tuple[int, bytes]]:
        """Stops the stream here, as :meth:`unsubscribe`, but as a request
        whose answer ``waiter`` gets: ``(id, body)`` to send, or ``None`` if
        the stream had already ended. The server answers once it has let
        the stream go (its handler's stream dropped), so waiting for the
        answer is how a caller knows the stream is over on the server."""
        if self._streams.pop(stream_id, None) is None:
            return None
        return self.request("rpc.unsubscribe", {"stream": stream_id}, waiter)

    @property
    def open_streams(self) -> int:
        """How many streams are open on this connection."""
        return len(self._streams)

    def notification(self, method: str, params: Any = None) -> bytes:
        """The body of a notification (no id: no answer, not even an error)."""
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        return self._check_size(_dumps(message))

    def cancel(self, request_id: Any) -> bytes:
        """The body of the ``rpc.cancel`` notification for ``request_id``."""
        return _dumps({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": request_id}})

    def batch(
        self, entries: Iterable[Tuple[str, Any, Any]], timeout_ms: Optional[int] = None
    ) -> Tuple[List[Optional[int]], bytes]:
        """Registers a batch; returns ``(ids, body)``.

        ``entries`` are ``(method, params, waiter)``; a ``waiter`` of ``None``
        makes that entry a notification (its id in the result is ``None``).
        Every waiter of the batch is resolved when the batch's response
        array arrives; one the array does not answer is rejected.
        """
        messages = []
        ids: List[Optional[int]] = []
        waiters = []
        for method, params, waiter in entries:
            message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
            if params is not None:
                message["params"] = params
            if waiter is None:
                ids.append(None)
            else:
                request_id = self._new_id()
                message["id"] = request_id
                if timeout_ms is not None:
                    message["timeout_ms"] = timeout_ms
                ids.append(request_id)
                waiters.append((request_id, waiter))
            messages.append(message)
        if not messages:
            raise ValueError("a batch must contain at least one call")
        body = self._check_size(_dumps(messages))
        group = [request_id for request_id, _ in waiters]
        for request_id, waiter in waiters:
            self._pending[request_id] = _Pending(waiter, group)
        return ids, body

    def forget(self, request_id: Any) -> bool:
        """Stops waiting for ``request_id`` (a timeout, a cancellation).

        Returns ``True`` if the call was still waiting (then the caller
        owns its outcome and should send :meth:`cancel`), ``False`` if its
        answer has already been taken by :meth:`receive` (then its waiter is
        being resolved).
        """
        entry = self._pending.pop(request_id, None)
        if entry is not None and entry.stream is not None:
            self._abandoned.add(request_id)  # if it opens after all, unsubscribe
        return entry is not None

    @property
    def in_flight(self) -> int:
        """How many calls are waiting for an answer."""
        return len(self._pending)

    # ---------------------------------------------------------- receiving --

    def receive(self, body: bytes) -> List[bytes]:
        """Handles one frame body from the server.

        Resolves or rejects the waiters it answers, routes notifications,
        and returns the bodies to send back (answers to the server's own
        requests, such as ``rpc.ping``). Raises :class:`ProtocolError` for a
        body that is not a JSON object or array.
        """
        try:
            message = _decode(body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body)
        except ValueError as e:  # UnicodeDecodeError too
            raise ProtocolError(f"the server sent a frame that is not JSON ({e}): {body[:120]!r}") from None
        if type(message) is dict and "method" not in message:
            # A response (the common case): straight to its call.
            return self._one(message)
        return self.receive_message(message, body)

    def receive_message(self, message: Any, body: Optional[bytes] = None) -> List[bytes]:
        """As :meth:`receive`, for a message already parsed from JSON
        (``body``, if given, is its text: it measures stream items exactly)."""
        if isinstance(message, dict):
            if message.get("method") == "rpc.item" and "id" not in message:
                return self._item(message, body)
            return self._one(message)
        if isinstance(message, list):
            self._array(message)
            return []
        raise ProtocolError(f"the server sent JSON that is neither an object nor an array: {message!r}"[:200])

    def _one(self, message: Dict[str, Any]) -> List[bytes]:
        if "method" in message:
            return self._from_server(message)
        if "id" not in message:
            raise ProtocolError(f"the server sent an object that is neither a response nor a request: {message!r}"[:200])
        request_id = message["id"]
        if request_id is None:
            if "error" in message:
                self._null_id_error(error_from_object(message["error"]))
            return []
        entry = self._pending.pop(request_id, None) if _hashable(request_id) else None
        if entry is None:
            if _hashable(request_id) and request_id in self._abandoned:
                self._abandoned.discard(request_id)
                result = message.get("result")
                if isinstance(result, dict) and _hashable(result.get("stream")):
                    return [_dumps({"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"stream": result["stream"]}})]
            return []  # answers no call we wait for (forgotten after a timeout): ignored
        # (A batch member may be answered on its own: the server sends one
        # error per id when even its error array would be too large.)
        if entry.stream is not None and "result" in message:
            self._opened(entry, message["result"])
            return []
        self._settle(entry.waiter, message)
        return []

    def _opened(self, entry: _Pending, result: Any) -> None:
        stream_id = result.get("stream") if isinstance(result, dict) else None
        if not isinstance(stream_id, int) or isinstance(stream_id, bool):
            entry.waiter.reject(ProtocolError(f"a streaming method answered without a stream id: {result!r}"[:200]))
            return
        stream = entry.stream
        assert stream is not None
        stream.id = stream_id
        self._streams[stream_id] = stream  # before the next frame: its items may follow at once
        entry.waiter.resolve(stream_id)

    def _item(self, message: Dict[str, Any], body: Optional[bytes]) -> List[bytes]:
        params = message.get("params")
        if not isinstance(params, dict) or "value" not in params:
            raise ProtocolError(f"the server sent an rpc.item without a stream and a value: {message!r}"[:200])
        stream_id = params.get("stream")
        stream = self._streams.get(stream_id) if _hashable(stream_id) else None
        if stream is None:
            return []  # a stream unsubscribed here: its last items may still come
        value = params["value"]
        size, exact = _item_size(body, value)
        if not stream.credit.arrived(size, exact):
            del self._streams[stream_id]
            window = stream.credit.window
            stream.sink.on_end(
                ProtocolError(
                    f"the server sent stream {stream_id} more than its credit allows "
                    f"(an item of {size} bytes over a window of {window} bytes); the stream is unsubscribed"
                )
            )
            return [_dumps({"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"stream": stream_id}})]
        stream.sink.on_item(value, size)
        return []

    def _null_id_error(self, error: RpcError) -> None:
        # An error about no particular request: about the connection (it is
        # closing: -32001, -32004) or about a request the server could not
        # read (a batch too large to answer). Keep it for the calls that
        # the close will fail.
        self.closing_error = error

    def _array(self, responses: List[Any]) -> None:
        groups: List[List[Any]] = []
        orphans: List[RpcError] = []
        for message in responses:
            if not isinstance(message, dict) or "id" not in message:
                raise ProtocolError(f"the server sent a batch entry that is not a response: {message!r}"[:200])
            request_id = message["id"]
            if request_id is None:
                orphans.append(
                    error_from_object(message.get("error"))
                    if "error" in message
                    else ServerError(-32603, "a batch entry with a null id and no error")
                )
                continue
            entry = self._pending.pop(request_id, None) if _hashable(request_id) else None
            if entry is None:
                continue
            if entry.group is not None and (not groups or groups[-1] is not entry.group):
                groups.append(entry.group)
            self._settle(entry.waiter, message)
        # Members the array did not answer: the server answers every member
        # with an id, so these are the ones it could not read (their errors
        # carry a null id), in order; any left over get a generic error.
        for group in groups:
            for request_id in group:
                entry = self._pending.pop(request_id, None)
                if entry is None:
                    continue
                error = orphans.pop(0) if orphans else ServerError(
                    -32603, "the server's batch response has no answer for this call"
                )
                entry.waiter.reject(error)

    def _settle(self, waiter: Any, message: Dict[str, Any]) -> None:
        if "error" in message:
            waiter.reject(error_from_object(message["error"]))
        elif "result" in message:
            waiter.resolve(message["result"])
        else:
            waiter.reject(ProtocolError(f"the server sent a response with neither result nor error: {message!r}"[:200]))

    def _from_server(self, message: Dict[str, Any]) -> List[bytes]:
        method = message.get("method")
        if "id" in message:
            # A request from the server: answer as a server would.
            request_id = message["id"]
            if method == "rpc.ping":
                return [_dumps({"jsonrpc": "2.0", "result": "pong", "id": request_id})]
            return [
                _dumps(
                    {
                        "jsonrpc": "2.0",
                        "error": {"code": -32601, "message": f"method `{method}` not found on this client"},
                        "id": request_id,
                    }
                )
            ]
        if method == "rpc.shutdown":
            self.draining = True
            return []
        if method == "rpc.end":
            params = message.get("params")
            stream_id = params.get("stream") if isinstance(params, dict) else None
            stream = self._streams.pop(stream_id, None) if _hashable(stream_id) else None
            if stream is not None:
                error = params.get("error") if isinstance(params, dict) else None
                stream.sink.on_end(error_from_object(error) if error is not None else None)
            return []
        if "in_reply_to" in message:
            in_reply_to = message["in_reply_to"]
            entry = self._pending.get(in_reply_to) if _hashable(in_reply_to) else None
            callback = getattr(entry.waiter, "on_notification", None) if entry is not None else None
            if callback is not None:
                callback(method, message.get("params"))
        return []  # other notifications: ignored, as the protocol asks

    def fail_all(self, make_error: Callable[[], BaseException]) -> int:
        """Rejects every waiting call, and ends every open stream, with a
        fresh ``make_error()`` each (the connection is gone); returns how
        many calls there were."""
        while self._streams:
            try:
                _, stream = self._streams.popitem()
            except KeyError:
                break
            stream.sink.on_end(make_error())
        count = 0
        while self._pending:
            try:
                _, entry = self._pending.popitem()
            except KeyError:
                break
            entry.waiter.reject(make_error())
            count += 1
        return count


def _hashable(value: Any) -> bool:
    return isinstance(value, (int, str, float))


# --------------------------------------------------------------- methods --

_SIMPLE_TYPES = {"number": float, "integer": int, "string": str, "boolean": bool, "array": list, "object": dict}


def schema_annotation(schema: Any) -> Any:
    """A Python type for a JSON Schema, for signatures shown by ``help()``
    (``number`` is ``float``, ``integer`` is ``int``, ...; anything else is
    ``typing.Any``). The stub generator has the full mapping."""
    if isinstance(schema, dict):
        kind = schema.get("type")
        if isinstance(kind, str) and kind in _SIMPLE_TYPES:
            return _SIMPLE_TYPES[kind]
    return Any


class MethodSpec:
    """One method of an OpenRPC document.

    Attributes:
        name (str): the wire name (may contain dots: ``calc.add``).
        aliases (list of str): other wire names of the same method
            (``x-aliases``).
        params (list of dict): the OpenRPC param objects, in order.
        param_structure (str): ``"either"``, ``"by-position"`` or ``"by-name"``.
        signature (inspect.Signature or None): the Python signature, or
            ``None`` when a param name cannot be a Python parameter (then
            arguments are passed through unchecked).
        doc (str): the docstring shown by ``help()``.
        stream (bool): a streaming method (``"x-stream": true``): a call
            returns an iterator of items, and ``result`` describes one item.
    """

    def __init__(self, method: Dict[str, Any], document: Optional[Dict[str, Any]] = None) -> None:
        self.raw = method
        self.name: str = method["name"]
        aliases = method.get("x-aliases") or []
        self.aliases: List[str] = [a for a in aliases if isinstance(a, str)]
        self.params: List[Dict[str, Any]] = [p for p in method.get("params") or [] if isinstance(p, dict)]
        self.param_structure: str = method.get("paramStructure") or "either"
        self.result: Optional[Dict[str, Any]] = method.get("result")
        self.stream: bool = method.get("x-stream") is True
        self.signature = self._signature()
        self.doc = self._doc(document)
        # Positional-only calls are checked by count alone (every parameter
        # is positional-or-keyword and the required ones come first), which
        # is what Signature.bind would decide, without its cost per call.
        self._arity: Optional[Tuple[int, int]] = None
        if self.signature is not None and self.param_structure != "by-name":
            parameters = self.signature.parameters.values()
            required = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
            self._arity = (required, len(parameters))

    def _signature(self) -> Optional[inspect.Signature]:
        parameters = []
        seen_optional = False
        for param in self.params:
            name = param.get("name")
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                return None
            required = bool(param.get("required", False))
            if required and seen_optional:
                # A required param after an optional one cannot be spelled
                # in Python; keep it keyword-checked but defaulted to None.
                required = False
            seen_optional = seen_optional or not required
            parameters.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=inspect.Parameter.empty if required else None,
                    annotation=schema_annotation(param.get("schema")),
                )
            )
        result_schema = self.result.get("schema") if isinstance(self.result, dict) else None
        returns = schema_annotation(result_schema)
        if self.raw.get("x-stream") is True:
            returns = Iterator[returns]  # type: ignore[valid-type]  # a Stream of items
        return inspect.Signature(parameters, return_annotation=returns)

    def _doc(self, document: Optional[Dict[str, Any]]) -> str:
        lines = []
        text = self.raw.get("description") or self.raw.get("summary") or ""
        lines.append(text.strip() or f"The remote method `{self.name}`.")
        if self.params:
            lines.append("")
            lines.append("Params:")
            for param in self.params:
                schema = param.get("schema")
                kind = json.dumps(schema, sort_keys=True) if schema is not None else "any"
                need = "required" if param.get("required") else "optional"
                desc = param.get("description")
                lines.append(f"    {param.get('name')} ({need}): {kind}" + (f" - {desc}" if desc else ""))
        if isinstance(self.result, dict):
            lines.append("")
            if self.raw.get("x-stream") is True:
                lines.append("Returns a stream (iterate it) whose items are: "
                             f"{json.dumps(self.result.get('schema'), sort_keys=True)}")
            else:
                lines.append(f"Returns: {json.dumps(self.result.get('schema'), sort_keys=True)}")
        error = self.raw.get("x-application-error")
        if error is not None:
            lines.append("")
            lines.append(f"Raises framedrpc.ApplicationError whose data is: {json.dumps(error, sort_keys=True)}")
        if self.aliases:
            lines.append("")
            lines.append("Aliases: " + ", ".join(self.aliases))
        lines.append("")
        lines.append(f"Wire name: {self.name!r}; parameters: {self.param_structure}.")
        return "\n".join(lines)

    def bind(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        """The ``params`` member for a call with ``args`` and ``kwargs``.

        Positional arguments only give an array; any keyword gives an object
        by name (positional ones are named from the signature), unless the
        method takes its params by position only. No arguments give
        ``None`` (no ``params`` member).

        Raises ``TypeError`` (too many arguments, a missing required one, an
        unknown keyword) without sending anything.
        """
        arity = self._arity
        if arity is not None and not kwargs and arity[0] <= len(args) <= arity[1]:
            return list(args) if args else None
        if self.signature is None:
            if args and kwargs:
                raise TypeError(f"{self.name}() takes arguments by position or by name, not both")
            return dict(kwargs) if kwargs else (list(args) if args else None)
        # An unknown keyword first: it is the likelier mistake (a misspelt
        # name), and it explains the "missing" argument Signature.bind reports.
        unknown = [k for k in kwargs if k not in self.signature.parameters]
        if unknown:
            raise TypeError(
                f"{self.name}() got an unexpected keyword argument {unknown[0]!r}; "
                f"signature: {self.name}{self.signature}"
            )
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}(): {e}; signature: {self.name}{self.signature}") from None
        if not kwargs and self.param_structure != "by-name":
            return list(args) if args else None
        arguments = dict(bound.arguments)
        if self.param_structure == "by-position":
            names = [p["name"] for p in self.params]
            last = max(names.index(n) for n in arguments) if arguments else -1
            return [arguments.get(n) for n in names[: last + 1]] or None
        return arguments


class Catalog:
    """The methods of an OpenRPC document (the result of ``rpc.discover``),
    by wire name and alias.

    Attributes:
        document (dict): the document itself.
        methods (dict): wire name or alias -> :class:`MethodSpec`.
        specs (list): each :class:`MethodSpec` once, in document order.
    """

    def __init__(self, document: Dict[str, Any]) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("methods"), list):
            raise ProtocolError("rpc.discover did not return an OpenRPC document (no `methods` list)")
        self.document = document
        self.specs: List[MethodSpec] = []
        self.methods: Dict[str, MethodSpec] = {}
        for raw in document["methods"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                continue
            spec = MethodSpec(raw, document)
            self.specs.append(spec)
            self.methods[spec.name] = spec
        for spec in self.specs:
            for alias in spec.aliases:
                self.methods.setdefault(alias, spec)

    def tree(self) -> Dict[str, Any]:
        """A nested dict: a name segment -> a :class:`MethodSpec` (a leaf,
        under its wire name or alias), or another such dict (a namespace,
        for wire names with dots). A segment both a method and a namespace
        keeps the method; the namespace's members stay reachable by their
        full wire name through ``call``."""
        root: Dict[str, Any] = {}
        for name, spec in self.methods.items():
            parts = name.split(".")
            node = root
            for part in parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    if child is not None:
                        break
                    child = node[part] = {}
                node = child
            else:
                node.setdefault(parts[-1], spec)
        return root
