"""The stub generator: ``python -m framedrpc stubgen URL > calc_client.py``.

It asks the server for its OpenRPC document (``rpc.discover``) and writes a
typed Python module: ``TypedDict`` classes for object schemas, type aliases
for the named schemas of ``components.schemas``, and one class with a
method per RPC, with type hints from the JSON Schemas and the method's
documentation as its docstring; a streaming method (``"x-stream": true``)
returns ``framedrpc.Stream[Item]``. The module needs only ``framedrpc``, and
mypy accepts it.
"""

import json
import keyword
import re
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["generate", "python_name"]


def python_name(name: str, *, cls: bool = False) -> str:
    """A valid Python identifier for ``name`` (``calc.add`` -> ``calc_add``;
    with ``cls``, CamelCase)."""
    if cls:
        words = re.split(r"[^0-9A-Za-z]+", name)
        out = "".join(w[:1].upper() + w[1:] for w in words if w)
    else:
        out = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    if keyword.iskeyword(out):
        out += "_"
    return out


class _Generator:
    def __init__(self, document: Dict[str, Any]) -> None:
        self.document = document
        self.schemas: Dict[str, Any] = (document.get("components") or {}).get("schemas") or {}
        self.definitions: List[str] = []  # emitted TypedDicts, in dependency order
        self.emitted: Dict[str, str] = {}  # schema name -> Python name
        self.taken: set = set()

    def _unique(self, base: str) -> str:
        name = base
        n = 2
        while name in self.taken:
            name = f"{base}{n}"
            n += 1
        self.taken.add(name)
        return name

    def ref(self, ref: str) -> str:
        prefix = "#/components/schemas/"
        if not ref.startswith(prefix):
            return "Any"
        key = ref[len(prefix):]
        if key in self.emitted:
            return self.emitted[key]
        name = self._unique(python_name(key, cls=True))
        self.emitted[key] = name
        schema = self.schemas.get(key)
        if schema is None:
            self.definitions.append(f"{name} = Any  # {ref} is missing from the document")
            return name
        hint = self.hint(schema, name)
        if hint != name:
            doc = schema.get("description") if isinstance(schema, dict) else None
            comment = f"  # {doc.splitlines()[0]}" if doc else ""
            self.definitions.append(f"{name} = {hint}{comment}")
        return name

    def hint(self, schema: Any, suggested: str) -> str:
        """A type expression for ``schema``; may emit TypedDicts named after ``suggested``."""
        if schema is True or schema is None or schema == {}:
            return "Any"
        if not isinstance(schema, dict):
            return "Any"
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "const" in schema:
            return f"Literal[{json.dumps(schema['const'])}]" if isinstance(schema["const"], (str, int, bool)) else "Any"
        if "enum" in schema and all(isinstance(v, (str, int)) for v in schema["enum"]) and schema["enum"]:
            return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"]) + "]"
        for key in ("oneOf", "anyOf"):
            if isinstance(schema.get(key), list):
                options = [self.hint(s, f"{suggested}{i}") for i, s in enumerate(schema[key])]
                return self._union(options)
        if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            return self.hint(schema["allOf"][0], suggested)
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._union([self.hint(dict(schema, type=k), suggested) for k in kind])
        if kind == "null":
            return "None"
        if kind == "boolean":
            return "bool"
        if kind == "integer":
            return "int"
        if kind == "number":
            return "float"
        if kind == "string":
            return "str"
        if kind == "array":
            items = schema.get("items")
            if isinstance(items, list):
                return "List[Any]"
            return f"List[{self.hint(items, suggested + 'Item')}]"
        if kind == "object" or "properties" in schema:
            props = schema.get("properties")
            if not isinstance(props, dict) or not props:
                extra = schema.get("additionalProperties")
                value = self.hint(extra, suggested + "Value") if isinstance(extra, dict) else "Any"
                return f"Dict[str, {value}]"
            if not all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in props):
                return "Dict[str, Any]"
            return self._typed_dict(schema, props, suggested)
        return "Any"

    def _union(self, options: List[str]) -> str:
        unique: List[str] = []
        for option in options:
            if option not in unique:
                unique.append(option)
        if "Any" in unique:
            return "Any"
        if len(unique) == 1:
            return unique[0]
        if "None" in unique and len(unique) == 2:
            return f"Optional[{[o for o in unique if o != 'None'][0]}]"
        return "Union[" + ", ".join(unique) + "]"

    def _typed_dict(self, schema: Dict[str, Any], props: Dict[str, Any], suggested: str) -> str:
        name = self._unique(python_name(schema.get("title") or suggested, cls=True))
        required = set(schema.get("required") or [])
        fields = [(key, self.hint(sub, name + python_name(key, cls=True)), key in required) for key, sub in props.items()]
        total = all(r for _, _, r in fields)
        lines = [f"class {name}(TypedDict{'' if total else ', total=False'}):"]
        doc = schema.get("description")
        lines.append(f"    {_docstring(doc or f'The JSON object {suggested}.', 4)}")
        for key, hint, req in fields:
            lines.append(f"    {key}: {hint}" + ("" if total or req else "  # optional"))
        self.definitions.append("\n".join(lines))
        return name


def _docstring(text: str, indent: int) -> str:
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    pad = " " * indent
    body = ("\n" + pad).join(text.splitlines())
    if "\n" in text:
        return f'"""{body}\n{pad}"""'
    return f'"""{body}"""'


def generate(document: Dict[str, Any], url: Optional[str] = None, class_name: Optional[str] = None) -> str:
    """The source of a typed client module for an OpenRPC ``document``.

    ``url`` is the default address of the generated class (and shown in
    its docstring); ``class_name`` defaults to the document's title in
    CamelCase plus ``Client``.
    """
    gen = _Generator(document)
    info = document.get("info") or {}
    title = info.get("title") or "Server"
    cls = class_name or python_name(title, cls=True) + "Client"
    gen.taken.add(cls)
    methods_src: List[str] = []
    used_names: set = {"close", "call"}
    aliases: List[Tuple[str, str]] = []  # (alias, the method's Python name)
    for method in document.get("methods") or []:
        if not isinstance(method, dict) or not isinstance(method.get("name"), str):
            continue
        wire = method["name"]
        if wire.startswith("rpc."):
            continue
        pyname = python_name(wire)
        while pyname in used_names or pyname.startswith("_"):
            pyname += "_"
        used_names.add(pyname)
        stem = python_name(wire, cls=True)
        args = ["self"]
        names = []
        seen_optional = False
        for param in method.get("params") or []:
            pname = python_name(param["name"])
            hint = gen.hint(param.get("schema"), stem + python_name(param["name"], cls=True))
            required = bool(param.get("required")) and not seen_optional
            if required:
                args.append(f"{pname}: {hint}")
            else:
                seen_optional = True
                args.append(f"{pname}: Optional[{hint}] = None" if not hint.startswith("Optional[") else f"{pname}: {hint} = None")
            names.append((param["name"], pname, required))
        result = method.get("result") or {}
        streaming = method.get("x-stream") is True
        ret = gen.hint(result.get("schema"), stem + ("Item" if streaming else "Result")) if result else "None"
        if streaming:
            ret = f"framedrpc.Stream[{ret if result else 'Any'}]"
        doc = (method.get("description") or method.get("summary") or f"Calls `{wire}`.").strip()
        extra = []
        if streaming:
            extra.append(
                "A stream: iterate it for the items (`with` or close() ends it early, "
                "sending rpc.unsubscribe)."
            )
        if method.get("x-aliases"):
            extra.append("Aliases on the server: " + ", ".join(method["x-aliases"]) + ".")
            aliases += [(a, pyname) for a in method["x-aliases"] if isinstance(a, str)]
        error = method.get("x-application-error")
        if isinstance(error, dict):
            err_hint = gen.hint(error, stem + "Error")
            extra.append(f"Raises framedrpc.ApplicationError whose data is a {err_hint}.")
        extra.append(f"Wire name: `{wire}`.")
        full_doc = doc + "\n\n" + "\n".join(extra)
        if any(not req for _, _, req in names):
            params_expr = "{" + ", ".join(f"{json.dumps(w)}: {p}" for w, p, _ in names) + "}"
            build = [f"        params = {params_expr}", "        sent = {k: v for k, v in params.items() if v is not None}"]
            send = "sent"
        else:
            build = []
            send = "[" + ", ".join(p for _, p, _ in names) + "]" if names else "None"
        methods_src.append(
            "\n".join(
                [
                    f"    def {pyname}({', '.join(args)}) -> {ret}:",
                    f"        {_docstring(full_doc, 8)}",
                    *build,
                    f"        return cast({json.dumps(ret) if streaming else ret}, self._client.{'stream' if streaming else 'call'}({json.dumps(wire)}, {send}))",
                ]
            )
        )
    alias_src: List[str] = []
    for alias, target in aliases:
        alias_py = python_name(alias)
        if alias_py in used_names or alias_py.startswith("_"):
            continue  # a method of that name exists: the alias adds nothing
        used_names.add(alias_py)
        alias_src.append(f"    {alias_py} = {target}  # the server's alias `{alias}`")
    if alias_src:
        methods_src.append("\n".join(alias_src))
    header = [
        f'"""Typed client for {title} {info.get("version", "")}'.rstrip() + ".",
        "",
        f"Generated by `python -m framedrpc stubgen{' ' + url if url else ''}` from the server's",
        "OpenRPC document; do not edit by hand: run the generator again.",
        '"""',
        "",
        "from typing import Any, Dict, List, Optional, Union, cast",
        "",
        "from typing import Literal, TypedDict",
        "",
        "import framedrpc",
        "",
        "__all__ = [" + json.dumps(cls) + "]",
    ]
    body = [
        "",
        "",
        f"class {cls}:",
        f"    {_docstring((info.get('description') or f'The methods of {title}.') + chr(10) + chr(10) + 'Args: url (tcp://, tls://, http://, https://) and the options of framedrpc.Client (token, ca_file, timeout, ...). Errors are framedrpc.RpcError subclasses.', 4)}",
        "",
        f"    def __init__(self, url: str{' = ' + json.dumps(url) if url else ''}, **options: Any) -> None:",
        "        self._client = framedrpc.Client(url, **options)",
        "",
        "    def close(self) -> None:",
        '        """Closes the connection."""',
        "        self._client.close()",
        "",
        f'    def __enter__(self) -> "{cls}":',
        "        return self",
        "",
        "    def __exit__(self, *exc: Any) -> None:",
        "        self.close()",
        "",
        "\n\n".join(methods_src),
        "",
    ]
    defs = ["", ""] + ["\n\n\n".join(gen.definitions)] if gen.definitions else []
    return "\n".join(header + defs + body)


def main(argv: List[str]) -> int:
    """``stubgen URL [--class-name NAME] [--token T] [--ca-file F]``: prints the module."""
    import argparse
    import sys

    from .client import Client

    parser = argparse.ArgumentParser(prog="python -m framedrpc stubgen", description="Write a typed client module for a server.")
    parser.add_argument("url")
    parser.add_argument(
        "--class-name", "--class", dest="class_name", metavar="NAME",
        help="the generated class's name (default: the server's title in CamelCase plus Client)",
    )
    parser.add_argument("--token")
    parser.add_argument("--ca-file")
    args = parser.parse_args(argv)
    client = Client(args.url, token=args.token, ca_file=args.ca_file)
    try:
        document = client.call("rpc.discover")
    finally:
        client.close()
    sys.stdout.write(generate(document, args.url, args.class_name))
    return 0
