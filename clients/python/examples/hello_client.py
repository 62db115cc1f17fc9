#!/usr/bin/env python3
"""The course's hello client (000), with framedrpc: asks for a name and
prints the server's greeting.

Usage: python3 hello_client.py [URL]   (default tcp://127.0.0.1:7070)

    Digite seu nome: João
    Olá, João!
"""

import sys

import framedrpc


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7070"
    with framedrpc.connect(url) as server:
        name = input("Digite seu nome: ")
        print(server.hello(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
