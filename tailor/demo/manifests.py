"""The demo's overlay of examples/shop: the example as written, pointed at the local stack.

examples/shop is what a shop would apply to a real cluster (managed Redis, an in-cluster Kafka
address, the shop's own origin). The demo applies the same manifests with only what must differ on a
laptop replaced, in code because the local ports are only known at run time:

- `spec.kafka.bootstrapServers` and `spec.redis.url`: the local Kafka and Redis (not managed Redis:
  the demo's worker and content API run as local processes and need a reachable address);
- `spec.kafka.topics`: prefixed with the namespace, because Kafka topics are cluster-wide and two
  namespaces applying the example must not share a topic;
- `spec.contentApi.corsOrigins`: the local storefront's origins, so the browser SDK may call the API.
- `spec.contentApi.rateLimits.perClient`: off, because every synthetic shopper of `--traffic` comes
  from 127.0.0.1 (per user the default limit stays).

Rules and variants are applied unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

#: The repository checkout this package runs from (`pip install -e .`): examples/, crds/ live here.
REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
STOREFRONT = REPO / "examples" / "storefront"
CRDS = REPO / "crds"

Manifest = dict[str, Any]


class ExampleMissing(RuntimeError):
    """The demo runs from a source checkout; the example files are not where they should be."""


def require_checkout() -> None:
    """Raise ExampleMissing naming what is missing, if the demo does not run from a checkout."""
    missing = [path for path in (SHOP, STOREFRONT, CRDS) if not path.is_dir()]
    if missing:
        listed = ", ".join(str(path) for path in missing)
        raise ExampleMissing(
            f"{listed} not found: `tailor demo` runs from a source checkout "
            "(git clone, then `make demo` or `pip install -e .` and `tailor demo`)"
        )


def load_example(directory: Path = SHOP) -> list[Manifest]:
    """Every document of the example's YAML files, in file-name order (stack, then variants, rules)."""
    documents: list[Manifest] = []
    for path in sorted(directory.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def stack_of(documents: Sequence[Manifest]) -> Manifest:
    """The example's one PersonalizationStack (the operator allows one per namespace)."""
    stacks = [doc for doc in documents if doc.get("kind") == "PersonalizationStack"]
    if len(stacks) != 1:
        raise ExampleMissing(f"the example must declare one PersonalizationStack, it has {len(stacks)}")
    return stacks[0]


def local_origins(url: str) -> list[str]:
    """The origins a browser may show for a 127.0.0.1 URL: as given, and with `localhost`."""
    origin = url.rstrip("/")
    origins = [origin]
    if "://127.0.0.1:" in origin:
        origins.append(origin.replace("://127.0.0.1:", "://localhost:"))
    return origins


def overlay(
    documents: Sequence[Manifest],
    *,
    namespace: str,
    kafka_bootstrap: str,
    redis_url: str,
    storefront_url: str,
) -> list[Manifest]:
    """The Namespace, then copies of `documents` with the stack pointed at the local stack."""
    out = [copy.deepcopy(doc) for doc in documents]
    spec = stack_of(out)["spec"]
    kafka = spec.setdefault("kafka", {})
    kafka["bootstrapServers"] = kafka_bootstrap
    topics = kafka.get("topics") or {"events": "events", "deadLetter": "events.deadletter"}
    kafka["topics"] = {role: f"{namespace}.{topic}" for role, topic in topics.items()}
    spec["redis"] = {"url": redis_url}
    content_api = spec.setdefault("contentApi", {})
    content_api["corsOrigins"] = local_origins(storefront_url)
    content_api.setdefault("rateLimits", {})["perClient"] = {"requests": 0}
    namespace_doc: Manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return [namespace_doc, *out]


def to_yaml(documents: Sequence[Manifest]) -> str:
    return yaml.safe_dump_all(list(documents), sort_keys=False)
