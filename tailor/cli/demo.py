"""`tailor demo`: its command line. The demo itself is the tailor.demo package (tailor/demo/runner.py)."""

from __future__ import annotations

import argparse
from typing import Any

from tailor import devstack
from tailor.demo import runner

DESCRIPTION = """\
Run the whole product on this machine and check that it works end to end:

  the local stack (reused if running) -> the CRDs and examples/shop applied -> tailor operator,
  tailor worker, tailor api as child processes -> every resource Ready -> the storefront on
  127.0.0.1 -> a self-check without a browser (page views through POST /v1/events switch a
  synthetic shopper's hero in GET /v1/decide; the event->decision time is printed).

The demo takes five consecutive ports from --port: storefront, content API, operator metrics,
worker metrics, the content API's admin port. Ctrl-C (or SIGTERM) stops the child processes; the
stack stays up (`tailor dev down`).
Details and things to try: docs/demo.md.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole product locally: stack, operator, worker, API, storefront, self-check",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--port",
        type=int,
        default=runner.DEFAULT_PORT,
        help="storefront port; the content API, operator and worker metrics and the API's admin port "
        "take the next four "
        "(default %(default)s; 0: any free ports)",
    )
    parser.add_argument(
        "--traffic", type=float, default=0.0, metavar="RATE", help="simulated shoppers' events per second"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run everything, do the self-check (and --duration s of --traffic), stop; exit 0 if it worked",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: Ctrl-C)",
    )
    parser.add_argument("--no-browser-hint", action="store_true", help="don't print what to try in a browser")
    parser.add_argument(
        "--namespace", default=runner.DEFAULT_NAMESPACE, help="namespace for the shop (default: %(default)s)"
    )
    parser.add_argument(
        "--stack-name",
        default=devstack.DEFAULT_STACK_NAME,
        help="which local stack (`tailor dev --name`) to use or start (default: %(default)s)",
    )
    parser.set_defaults(handler=runner.run)
