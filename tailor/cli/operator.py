"""`tailor operator`: run the Kubernetes operator (kopf) with KUBECONFIG or in-cluster credentials.

Flags override TAILOR_OPERATOR_* environment variables (see tailor_operator.settings). Outside the
cluster, reach the stacks' Redis with --redis-url (e.g. through `kubectl port-forward`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import kopf
from tailor_operator import main as operator_main
from tailor_operator import settings

from tailor.core import logs


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the operator: reconcile stacks, compile and publish rulesets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--namespace", "-n", help="watch only this namespace (default: all)")
    parser.add_argument(
        "--redis-url", help="reach every stack's Redis here (an operator outside the cluster; tests)"
    )
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (default 9090; 0: off)")
    parser.add_argument("--liveness", help="liveness URL (default http://0.0.0.0:8080/healthz; 'off')")
    parser.add_argument("--peering", help="peering object name (default tailor)")
    parser.add_argument("--priority", type=int, help="peering priority; the highest live operator acts")
    parser.add_argument("--standalone", action="store_true", default=None, help="no peering (one operator)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.log_format == "json":
        # kopf's own JSON format (as `kopf run --log-format=json`: timestamp, severity, message, and
        # the Kubernetes object under `object`), with the fields every Tailor component writes added.
        kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON, log_refkey="object")
        for handler in logging.getLogger().handlers:
            handler.addFilter(logs.OperatorFields("operator"))
    else:
        logs.configure("text", component="operator", level=logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        # kopf logs every handler run at INFO; ours say what changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    overrides: dict[str, Any] = {
        "namespace": args.namespace,
        "redis_url": args.redis_url,
        "metrics_port": args.metrics_port,
        "peering": args.peering,
        "priority": args.priority,
        "standalone": args.standalone,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    if args.liveness is not None:  # after the filter: "off" is an explicit None
        given["liveness_url"] = None if args.liveness == "off" else args.liveness
    ours = settings.OperatorSettings(**given)
    return operator_main.run(ours)
