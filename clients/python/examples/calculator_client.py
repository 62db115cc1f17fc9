#!/usr/bin/env python3
"""The course's XML-RPC calculator client (002), with framedrpc: reads two
numbers and prints their sum, difference, product, quotient and power,
all five sent as one batch.

Usage: python3 calculator_client.py [URL]   (default tcp://127.0.0.1:7070)
"""

import sys

import framedrpc


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7070"
    a = float(input("1o numero: "))
    b = float(input("2o numero: "))
    with framedrpc.connect(url) as calc:
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


if __name__ == "__main__":
    sys.exit(main())
