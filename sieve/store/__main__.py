"""Command line of the model store: `python -m sieve.store list` or `has NAME`."""

import argparse
import sys

import sieve.store
from sieve.store import StoreError, open_store


def main(argv: list[str] | None = None) -> int:
    """Command line: list models, or test whether one has a version."""
    parser = argparse.ArgumentParser(prog="python -m sieve.store", description=sieve.store.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list models and their versions")
    has = sub.add_parser("has", help="exit 0 when the model has a published version")
    has.add_argument("name")
    args = parser.parse_args(argv)
    try:
        store = open_store()
        if args.command == "has":
            return 0 if store.latest(args.name) else 1
        for name in store.models():
            print(f"{name}: {', '.join(store.versions(name))}")
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
