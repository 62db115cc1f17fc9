"""framedrpc: a JSON-RPC 2.0 client for rpc-core servers, standard library only.

Quick start::

    import framedrpc
    calc = framedrpc.connect("tcp://127.0.0.1:7070")
    print(calc.add(2, 3))          # 5.0, by position
    print(calc.add(a=2, b=3))      # 5.0, by name

``connect`` takes ``tcp://``, ``tls://``, ``http://`` and ``https://`` URLs;
``aconnect`` is the asyncio variant. A streaming method returns a
:class:`Stream` to iterate (``for event in proxy.live.watch(): ...``; an
:class:`AsyncStream` with ``async for`` in asyncio). Errors are the classes of
:mod:`framedrpc.errors`. ``python -m framedrpc stubgen URL`` writes a typed
client module.
"""

from .client import Batch, Client, PendingCall, Proxy, Stream, connect
from .core import DEFAULT_MAX_FRAME
from .errors import (
    ApplicationError,
    DeadlineExceeded,
    FrameTooLarge,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    ProtocolError,
    RequestTooLarge,
    RpcError,
    ServerBusy,
    ServerError,
    ShuttingDown,
    TooManyConnections,
    Unauthorized,
)

__version__ = "0.1.0"

__all__ = [
    "connect",
    "aconnect",
    "Client",
    "Proxy",
    "Batch",
    "PendingCall",
    "Stream",
    "AsyncStream",
    "DEFAULT_MAX_FRAME",
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
]


def __getattr__(name):  # the asyncio client is imported only when used
    if name in ("aconnect", "AsyncClient", "AsyncProxy", "AsyncBatch", "AsyncStream"):
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'framedrpc' has no attribute {name!r}")
