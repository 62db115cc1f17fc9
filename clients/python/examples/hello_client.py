#!/usr/bin/env python3
"""The course's hello client (000), with framedrpc: asks for a name and
prints the server's greeting, as `rpc-demo hello` does.

Usage: python3 hello_client.py [URL]   (default tcp://127.0.0.1:7070)

    Digite seu nome: João
    Olá, João!

An empty name is asked again; the end of input (Ctrl-D) or `fim` leaves
with a one-line message and exit status 1, as does a server that cannot be
reached.
"""

import sys
from typing import Optional

import framedrpc

QUIT = ("fim", "quit", "exit")


def ask(prompt: str) -> Optional[str]:
    """The next line, trimmed; ``None`` at the end of input or on a quit word."""
    try:
        line = input(prompt).strip()
    except EOFError:
        print()
        return None
    return None if line.lower() in QUIT else line


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7070"
    try:
        with framedrpc.connect(url) as server:
            while True:
                name = ask("Digite seu nome: ")
                if name is None:
                    print("hello_client: no name was typed", file=sys.stderr)
                    return 1
                if not name:
                    print("type a name, or `fim` to leave")
                    continue
                print(server.hello(name))
                return 0
    except (OSError, ValueError, framedrpc.RpcError) as e:
        # OSError: the server cannot be reached (the message names the
        # address) or was lost; ValueError: a malformed URL.
        message = str(getattr(e, "strerror", None) or e)
        if "could not connect to" not in message:
            message += f" (server {url})"
        print(f"hello_client: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
        return 130


if __name__ == "__main__":
    sys.exit(main())
