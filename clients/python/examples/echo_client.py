#!/usr/bin/env python3
"""The course's echo client (lab 004), with framedrpc: sends each line
typed and prints what the server sends back, until the line `fim` (which
is not sent) or the end of input.

Usage: python3 echo_client.py [URL]   (default tcp://127.0.0.1:7070)
"""

import sys

import framedrpc


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7070"
    try:
        with framedrpc.connect(url) as server:
            while True:
                try:
                    message = input("Digite uma mensagem: ")
                except EOFError:
                    break
                if message.strip() == "fim":
                    break
                print("Server recebeu:", server.echo(message))
    except (OSError, ValueError, framedrpc.RpcError) as e:
        # OSError: the server cannot be reached (the message names the
        # address) or was lost; ValueError: a malformed URL.
        text = str(getattr(e, "strerror", None) or e)
        if "could not connect to" not in text:
            text += f" (server {url})"
        print(f"echo_client: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
        return 130
    print("Fim...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
