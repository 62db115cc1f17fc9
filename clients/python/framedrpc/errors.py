"""Exceptions raised by framedrpc.

Every JSON-RPC error response becomes an instance of a subclass of
:class:`RpcError`, chosen by its ``code`` (see ``PROTOCOL.md``, "Errors"):

====================  =======  ==========================================
class                 code     also an instance of
====================  =======  ==========================================
ParseError            -32700
InvalidRequest        -32600
MethodNotFound        -32601   AttributeError
InvalidParams         -32602   TypeError
InternalError         -32603
ServerBusy            -32000
FrameTooLarge         -32001   ConnectionAbortedError (the server closes)
DeadlineExceeded      -32002   TimeoutError
Unauthorized          -32003   PermissionError
TooManyConnections    -32004   ConnectionRefusedError (the server closes)
ShuttingDown          -32005
ApplicationError      1000
ServerError           others
====================  =======  ==========================================

Failures below JSON-RPC (the peer closed, a frame that is not JSON, an
oversized frame) are the standard :class:`ConnectionError` family;
:class:`ProtocolError` is the one this package adds to it.
"""

from typing import Any, Dict, Optional, Type

__all__ = [
    "RpcError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "ServerBusy",
    "FrameTooLarge",
    "DeadlineExceeded",
    "Unauthorized",
    "TooManyConnections",
    "ShuttingDown",
    "ApplicationError",
    "ServerError",
    "ProtocolError",
    "RequestTooLarge",
    "error_from_object",
]

_NO_DATA = object()


class RpcError(Exception):
    """A JSON-RPC error answered by the server.

    Attributes:
        code (int): the JSON-RPC error code.
        message (str): the server's text, for people (it may change).
        data: the error's ``data`` member, decoded from JSON (``None`` when
            the server sent none; see :attr:`has_data`).
    """

    #: The code this class stands for (``None`` for :class:`ServerError`).
    CODE: Optional[int] = None

    def __init__(self, code: int, message: str, data: Any = _NO_DATA) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.has_data = data is not _NO_DATA
        self.data: Any = None if data is _NO_DATA else data

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, data={self.data!r})"

    def __reduce__(self):  # keeps the exception picklable (multiprocessing, logging)
        args = (self.code, self.message, self.data) if self.has_data else (self.code, self.message)
        return (type(self), args)


class ParseError(RpcError):
    """-32700: the server could not read the frame as JSON."""

    CODE = -32700


class InvalidRequest(RpcError):
    """-32600: valid JSON but not a request the server accepts."""

    CODE = -32600


class MethodNotFound(RpcError, AttributeError):
    """-32601: the server offers no method of that name."""

    CODE = -32601


class InvalidParams(RpcError, TypeError):
    """-32602: the params do not fit the method (the message names the parameter)."""

    CODE = -32602


class InternalError(RpcError):
    """-32603: the server failed while handling a valid call."""

    CODE = -32603


class ServerBusy(RpcError):
    """-32000: the connection already has the maximum of calls in flight; retry later."""

    CODE = -32000


class FrameTooLarge(RpcError, ConnectionAbortedError):
    """-32001: a frame exceeded the server's maximum; the server closes the connection."""

    CODE = -32001


class DeadlineExceeded(RpcError, TimeoutError):
    """-32002, or the local timeout: the call did not finish within its budget.

    Raised with code -32002 whether the server gave up (its ``timeout_ms``
    ran out) or the client stopped waiting first (then :attr:`local` is
    true and ``rpc.cancel`` has been sent, where the transport has one).
    """

    CODE = -32002

    def __init__(self, code: int, message: str, data: Any = _NO_DATA, local: bool = False) -> None:
        super().__init__(code, message, data)
        self.local = local


class Unauthorized(RpcError, PermissionError):
    """-32003: the server requires a token and none (or a wrong one) was given."""

    CODE = -32003


def token_hint(error: "Unauthorized") -> "Unauthorized":
    """A copy of ``error`` whose message says how to give a token in
    Python, for a client that was given none."""
    hinted = Unauthorized(
        error.code, f"{error.message}; pass the token: framedrpc.connect(url, token=...)",
        *((error.data,) if error.has_data else ()),
    )
    return hinted


class TooManyConnections(RpcError, ConnectionRefusedError):
    """-32004: the server serves its maximum of connections; it closed this one."""

    CODE = -32004


class ShuttingDown(RpcError):
    """-32005: the server is stopping; the call did not run. A new call redials."""

    CODE = -32005


class ApplicationError(RpcError):
    """1000: the method ran and returned its own error.

    ``data`` is the server's typed error value as JSON, e.g. the string
    ``"DivisionByZero"`` for a unit variant, or
    ``{"NotFinite": {"operation": "pow"}}`` for a struct variant.

    Attributes:
        kind (str or None): the variant's name for every shape of serde's
            externally tagged enums: the string itself for a unit variant,
            the single key of the object for newtype, tuple and struct
            variants; ``None`` for any other shape.
        value: what the variant carries (``None`` for a unit variant, the
            inner value for the others).
    """

    CODE = 1000

    @property
    def kind(self) -> Optional[str]:
        """The variant's name (see the class docstring), or ``None``."""
        data = self.data
        if isinstance(data, str):
            return data
        if isinstance(data, dict) and len(data) == 1:
            return next(iter(data))
        return None

    @property
    def value(self) -> Any:
        """What the variant carries (``None`` for a unit variant)."""
        data = self.data
        if isinstance(data, dict) and len(data) == 1:
            return next(iter(data.values()))
        return None


class ServerError(RpcError):
    """An error code this package has no class for."""


class ProtocolError(ConnectionError):
    """The peer broke the wire protocol (a frame that is not JSON, an
    oversized frame, an HTTP answer that is not JSON-RPC). The connection
    is closed; calls in flight on it fail with this error."""


class RequestTooLarge(ValueError):
    """A request (or batch) whose frame would exceed the maximum frame
    size; it was not sent."""


_BY_CODE: Dict[int, Type[RpcError]] = {
    cls.CODE: cls  # type: ignore[misc]
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        ServerBusy,
        FrameTooLarge,
        DeadlineExceeded,
        Unauthorized,
        TooManyConnections,
        ShuttingDown,
        ApplicationError,
    )
}


def error_from_object(error: Any) -> RpcError:
    """The exception for a JSON-RPC ``error`` member (a dict with ``code``,
    ``message`` and optionally ``data``). A malformed error object still
    gives an :class:`RpcError` (a :class:`ServerError` saying what was wrong),
    never a ``KeyError``."""
    if not isinstance(error, dict):
        return ServerError(-32603, f"malformed error object from the server: {error!r}")
    code = error.get("code")
    message = error.get("message")
    if not isinstance(code, int) or isinstance(code, bool):
        return ServerError(-32603, f"malformed error object from the server (code is not an integer): {error!r}")
    if not isinstance(message, str):
        message = repr(message)
    cls = _BY_CODE.get(code, ServerError)
    if "data" in error:
        return cls(code, message, error["data"])
    return cls(code, message)
