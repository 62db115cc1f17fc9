#!/usr/bin/env python3
"""The course's REST-calculator exercise client (002, "APIs na AWS
Lambda"), with framedrpc: asks for the operation (soma, sub, div, mult:
the server's aliases) and two values, and prints a JSON-like result.

Usage: python3 rest_exercise_client.py [URL]   (default http://127.0.0.1:7070)

    Informe a operação: [soma] [sub] [div] [mult]mult
    operação: mult
    Informe o valor 1: 8
    Informe o valor 2: 5
    {'A multiplicação': 40.0}
    Fim...
"""

import sys

import framedrpc

LABELS = {"soma": "A soma", "sub": "A subtração", "div": "A divisão", "mult": "A multiplicação"}


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7070"
    with framedrpc.connect(url) as calc:
        operation = input("Informe a operação: [soma] [sub] [div] [mult]").strip()
        print(f"operação: {operation}")
        if operation not in LABELS:
            print(f"operação desconhecida: {operation!r}")
            return 1
        a = float(input("Informe o valor 1: "))
        b = float(input("Informe o valor 2: "))
        try:
            print({LABELS[operation]: getattr(calc, operation)(a, b)})
        except framedrpc.ApplicationError as e:
            print({"erro": e.kind})
    print("Fim...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
