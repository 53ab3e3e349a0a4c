"""`tailor worker --stack NS/NAME`: count a stack's events into per-user profiles in Redis.

Needs only TAILOR_REDIS_URL: the Kafka servers, topics and features come from the ruleset the
operator published for the stack, and changes to them are followed. SIGTERM (or Ctrl-C) finishes
the batch in hand, commits its offsets and leaves the consumer group.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import Any

from pydantic import ValidationError

from tailor.core import logs


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="consume a stack's events into per-user profiles",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", required=True, metavar="NS/NAME", help="the PersonalizationStack to serve")
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus port (default 9102; 0: none)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the worker's metrics register in the process-wide registry,
    # and `tailor api` (same CLI, same process) registers its own `tailor_ruleset_version`.
    from tailor_worker import metrics, worker
    from tailor_worker import settings as worker_settings

    logs.configure(args.log_format, component="worker", stack=args.stack)
    if args.stack.count("/") != 1 or not all(args.stack.split("/")):
        print(f"tailor worker: --stack must be NAMESPACE/NAME, got {args.stack!r}", file=sys.stderr)
        return 2
    try:
        config = worker_settings.WorkerSettings()  # from the environment
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            name = str(problem["loc"][0]) if problem["loc"] else "settings"
            if name.islower():  # a field: name the variable that sets it
                name = f"TAILOR_WORKER_{name.upper()}"
            if problem["type"] == "missing":
                print(f"tailor worker: set {name}: the Redis where the operator publishes the stack",
                      file=sys.stderr)  # fmt: skip
            else:
                print(f"tailor worker: {name}: {problem['msg']}", file=sys.stderr)
        return 2
    runner = worker.Worker(args.stack, config)
    port = config.metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        metrics.serve(port, config.metrics_host, runner.readiness, runner.progress.check)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info(
            "%s received; finishing the current batch", signal.Signals(signum).name
        )
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run()
    return 0
