"""The `tailor` command: one argparse parser, one sub-command module per area.

Each module in ``COMMANDS`` has ``register(subparsers)``, which adds its sub-command and
sets ``handler`` (a function taking the parsed namespace and returning an exit code).
Add a module to the tuple to add a command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tailor.cli import api, demo, dev, diff, operator, rollback, simulate, validate, worker

COMMANDS = (dev, validate, diff, simulate, rollback, api, worker, operator, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor", description="Declarative, real-time content personalization."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
