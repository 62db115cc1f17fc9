"""``python -m framedrpc stubgen URL``: see :mod:`framedrpc.stubgen`."""

import sys


def main() -> int:
    """Dispatches the subcommand; prints usage for anything else."""
    if len(sys.argv) >= 2 and sys.argv[1] == "stubgen":
        from .stubgen import main as stubgen

        return stubgen(sys.argv[2:])
    print("usage: python -m framedrpc stubgen URL [--class-name NAME] [--token T] [--ca-file F]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
