"""The `tailor` command: one argparse parser, one sub-command module per area.

Each module in ``COMMANDS`` has ``register(subparsers)``, which adds its sub-command and
sets ``handler`` (a function taking the parsed namespace and returning an exit code).
Add a module to the tuple to add a command. Every command takes ``--log-format text|json``
(tailor.core.logs); the long-running ones (api, worker, operator) set their logging up themselves,
the others log JSON lines as component ``cli`` when asked to.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tailor.cli import api, demo, dev, diff, operator, rollback, simulate, validate, worker
from tailor.core import logs

COMMANDS = (dev, validate, diff, simulate, rollback, api, worker, operator, demo)
OWN_LOGGING = frozenset({"api", "worker", "operator"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor", description="Declarative, real-time content personalization."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    for command in subparsers.choices.values():
        command.add_argument(
            "--log-format",
            choices=logs.FORMATS,
            help=f"log lines as text (the default) or JSON objects on stderr; env {logs.ENV_FORMAT}",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.log_format = logs.chosen_format(args.log_format)
    except ValueError as error:
        parser.error(str(error))
    if args.log_format == "json" and args.command not in OWN_LOGGING:
        logs.configure("json", component="cli")
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
