#!/usr/bin/env python3
"""The course's XML-RPC calculator client (002), with framedrpc: reads two
numbers and prints their sum, difference, product, quotient and power,
all five sent as one batch.

Usage: python3 calculator_client.py [URL]   (default tcp://127.0.0.1:7070)

Numbers as `rpc-demo calc` takes them: `2.5` or `2,5` (the Portuguese
decimal comma); anything else is asked again. The end of input (Ctrl-D) or
`fim` leaves; a server that cannot be reached gets a one-line message and
exit status 1.
"""

import math
import sys
from typing import Optional

import framedrpc

QUIT = ("fim", "quit", "exit")


def parse_number(text: str) -> Optional[float]:
    """``2.5`` or ``2,5`` as a finite float; ``None`` for anything else."""
    try:
        n = float(text.replace(",", "."))
    except ValueError:
        return None
    return n if math.isfinite(n) else None


def ask_number(prompt: str) -> Optional[float]:
    """Asks until a number is typed; ``None`` at the end of input or on a quit word."""
    while True:
        try:
            text = input(prompt).strip()
        except EOFError:
            print()
            return None
        if text.lower() in QUIT:
            return None
        n = parse_number(text)
        if n is not None:
            return n
        print(f"'{text}' is not a number; type one like 8 or 2.5")


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7070"
    try:
        with framedrpc.connect(url) as calc:
            a = ask_number("1o numero: ")
            if a is None:
                return 0
            b = ask_number("2o numero: ")
            if b is None:
                return 0
            with calc.batch() as batch:
                answers = {
                    "Somar": batch.add(a, b),
                    "Subtrair": batch.sub(a, b),
                    "Multiplicar": batch.mul(a, b),
                    "Dividir": batch.div(a, b),
                    "Potência": batch.pow(a, b),
                }
            for label, answer in answers.items():
                try:
                    print(f"{label}: {answer.result()}")
                except framedrpc.ApplicationError as e:
                    print(f"{label}: erro ({e.kind}: {e.message})")
        return 0
    except (OSError, ValueError, framedrpc.RpcError) as e:
        # OSError: the server cannot be reached (the message names the
        # address) or was lost; ValueError: a malformed URL.
        message = str(getattr(e, "strerror", None) or e)
        if "could not connect to" not in message:
            message += f" (server {url})"
        print(f"calculator_client: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
        return 130


if __name__ == "__main__":
    sys.exit(main())
