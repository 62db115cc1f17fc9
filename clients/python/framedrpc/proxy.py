"""Attribute access for remote methods, shared by the threaded proxy, the
asyncio proxy and batches: each supplies an ``invoke(wire_name, params)``
and gets back whatever it returns (a value, a coroutine, a pending call).
"""

from typing import Any, Callable, Dict, List, Optional

from .core import Catalog, MethodSpec

Invoke = Callable[[str, Any], Any]


def make_method(spec: MethodSpec, invoke: Invoke, attribute: str) -> Callable[..., Any]:
    """A function that checks its arguments against ``spec`` (``TypeError``
    locally) and passes the params to ``invoke``. ``help()`` shows its
    signature and the method's documentation."""
    wire_name = spec.name
    bind = spec.bind

    def method(*args: Any, **kwargs: Any) -> Any:
        return invoke(wire_name, bind(args, kwargs))

    method.__name__ = attribute
    method.__qualname__ = attribute
    method.__doc__ = spec.doc
    if spec.signature is not None:
        method.__signature__ = spec.signature  # type: ignore[attr-defined]
    method.spec = spec  # type: ignore[attr-defined]
    return method


class _Dynamic:
    """A method of a server that did not describe itself (no
    ``rpc.discover``): any name, any arguments (by position or by name,
    not both), and attributes for dotted names."""

    def __init__(self, invoke: Invoke, name: str) -> None:
        self._invoke = invoke
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and kwargs:
            raise TypeError(f"{self._name}() takes arguments by position or by name, not both")
        return self._invoke(self._name, dict(kwargs) if kwargs else (list(args) if args else None))

    def __getattr__(self, name: str) -> "_Dynamic":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Dynamic(self._invoke, f"{self._name}.{name}")

    def __repr__(self) -> str:
        return f"<remote method {self._name!r} (undescribed)>"


class Namespace:
    """Remote methods as attributes: ``ns.add(2, 3)``, and nested
    namespaces for wire names with dots: ``ns.calc.add(2, 3)`` calls
    ``calc.add``. ``dir(ns)`` lists them. An unknown name raises
    ``AttributeError`` (when the server described its methods)."""

    def __init__(self, tree: Optional[Dict[str, Any]], invoke: Invoke, prefix: str = "") -> None:
        self.__dict__["_ns_tree"] = tree
        self.__dict__["_ns_invoke"] = invoke
        self.__dict__["_ns_prefix"] = prefix
        if tree:
            # help(proxy) documents the instance's class: give this one a
            # class of its own whose text lists the remote methods.
            cls = type(self)
            doc = (cls.__doc__ or "").rstrip() + "\n\nRemote methods (from rpc.discover):\n\n" + listing(tree, prefix)
            object.__setattr__(self, "__class__", type(cls.__name__, (cls,), {"__doc__": doc, "__module__": cls.__module__}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_ns_"):
            raise AttributeError(name)
        tree = self.__dict__["_ns_tree"]
        invoke = self.__dict__["_ns_invoke"]
        prefix = self.__dict__["_ns_prefix"]
        if tree is None:
            return _Dynamic(invoke, prefix + name)
        node = tree.get(name)
        if node is None:
            raise AttributeError(
                f"the server has no method {prefix + name!r}; dir() lists the methods it described"
            )
        found: Any
        if isinstance(node, dict):
            found = Namespace(node, invoke, prefix + name + ".")
        else:
            found = make_method(node, invoke, name)
        # Found by ordinary lookup from now on, without this method (a name
        # reaches here only when the class has no attribute of that name).
        self.__dict__[name] = found
        return found

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"remote methods cannot be assigned ({name!r})")

    def __dir__(self) -> List[str]:
        tree = self.__dict__["_ns_tree"]
        own = [n for n in dir(type(self)) if not n.startswith("_")]
        return sorted(set(own) | set(tree or ()))

    def __repr__(self) -> str:
        prefix = self.__dict__["_ns_prefix"]
        return f"<{type(self).__name__} {prefix.rstrip('.') or '(root)'}>"


def listing(tree: Dict[str, Any], prefix: str = "") -> str:
    """The methods of ``tree`` (``prefix``: the wire names' common start),
    one entry each by wire name: the signature, the aliases, and the first
    line of its text."""
    specs: Dict[str, Any] = {}

    def walk(node: Dict[str, Any]) -> None:
        for value in node.values():
            if isinstance(value, dict):
                walk(value)
            else:
                specs[value.name] = value

    walk(tree)
    lines: List[str] = []
    for name in sorted(specs):
        spec = specs[name]
        signature = str(spec.signature) if spec.signature is not None else "(...)"
        aliases = f"  (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        first = (spec.doc or "").strip().split("\n", 1)[0]
        lines.append(f"    {name[len(prefix):]}{signature}{aliases}" + (f"\n        {first}" if first else ""))
    return "\n".join(lines)


def tree_of(catalog: Optional[Catalog]) -> Optional[Dict[str, Any]]:
    """The name tree of ``catalog`` (``None``: an undescribed server)."""
    return catalog.tree() if catalog is not None else None
