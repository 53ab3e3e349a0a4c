"""A component's `template` (spec.workers, spec.contentApi, spec.redis) laid over the pod template the
builders make, and the component's PodDisruptionBudget. Pure functions on plain dicts, no API calls.

What the operator sets always wins, and a clash is refused instead of silently overridden: an extra env
variable, volume or mount path that the operator's own pod already has raises TemplateConflict, which
the reconciler reports as Reconciled=False (the CRD cannot know the names: they depend on the rest of
the spec). Labels and annotations the operator relies on are refused earlier, by the CRD's rules, and
are laid under the operator's anyway.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from tailor.core.rules import specs

Manifest = dict[str, Any]

# Pods that may be evicted at once when the stack says nothing: one at a time, and never zero, so a
# node drain always proceeds, even for a component with one replica.
DEFAULT_MAX_UNAVAILABLE = 1


class TemplateConflict(ValueError):
    """The template sets something the operator sets itself; the message names it and where."""


def apply(
    pod_template: Manifest,
    template: specs.PodTemplate,
    selector: Mapping[str, str],
    where: str,
    claims: tuple[str, ...] = (),
) -> Manifest:
    """`pod_template` ({metadata, spec}, as the builders make it) with `template` laid over it, in place.
    The first container is the component's own; `where` (e.g. "workers.template") names the stack's
    field in errors; `claims` are a StatefulSet's volume claim names, which are pod volumes too."""
    metadata, spec = pod_template["metadata"], pod_template["spec"]
    pod = template.pod
    metadata["labels"] = {**pod.metadata.labels, **metadata.get("labels", {})}
    annotations = {**pod.metadata.annotations, **metadata.get("annotations", {})}
    if annotations:
        metadata["annotations"] = annotations
    if pod.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": secret.name} for secret in pod.image_pull_secrets]
    if pod.node_selector:
        spec["nodeSelector"] = dict(pod.node_selector)
    if pod.affinity:
        spec["affinity"] = copy.deepcopy(pod.affinity)
    if pod.tolerations:
        spec["tolerations"] = copy.deepcopy(list(pod.tolerations))
    if pod.topology_spread_constraints:
        # A constraint without a selector counts no pods at all; the component's own is what is meant.
        spec["topologySpreadConstraints"] = [
            {"labelSelector": {"matchLabels": dict(selector)}, **copy.deepcopy(constraint)}
            for constraint in pod.topology_spread_constraints
        ]
    if pod.priority_class_name:
        spec["priorityClassName"] = pod.priority_class_name
    if pod.service_account_name:
        spec["serviceAccountName"] = pod.service_account_name
    if pod.volumes:
        ours = [*spec.get("volumes", []), *({"name": claim} for claim in claims)]
        added = _added(ours, pod.volumes, "name", f"{where}.pod.volumes")
        spec["volumes"] = [volume for volume in added if volume["name"] not in claims]
    container = spec["containers"][0]
    extra = template.container
    if extra.env:
        container["env"] = _added(container.get("env", []), extra.env, "name", f"{where}.container.env")
    if extra.volume_mounts:
        container["volumeMounts"] = _added(
            container.get("volumeMounts", []),
            extra.volume_mounts,
            "mountPath",
            f"{where}.container.volumeMounts",
        )
    return pod_template


def _added(
    ours: list[dict[str, Any]], theirs: Iterable[Mapping[str, Any]], key: str, where: str
) -> list[dict[str, Any]]:
    """`ours` followed by `theirs`, refusing any of theirs whose `key` one of ours already has."""
    taken = {item[key] for item in ours}
    clashes = sorted({str(item[key]) for item in theirs if item[key] in taken})
    if clashes:
        raise TemplateConflict(
            f"{where}: {', '.join(clashes)} {'is' if len(clashes) == 1 else 'are'} set by the operator; "
            f"remove {'it' if len(clashes) == 1 else 'them'} from the template (the operator's own "
            f"{key}s here: {', '.join(sorted(str(name) for name in taken))})"
        )
    return [*ours, *(copy.deepcopy(dict(item)) for item in theirs)]


def disruption_budget(
    metadata: Manifest, selector: Mapping[str, str], settings: specs.DisruptionBudgetSettings
) -> Manifest | None:
    """The component's PodDisruptionBudget, or None when the stack turned it off.

    The CRD refuses budgets that would let no pod go (maxUnavailable 0, minAvailable at or above the
    replicas), so a drain never waits forever. Unhealthy pods may always be evicted
    (AlwaysAllow): a crash-looping pod protects nothing, and would otherwise hold a drain up."""
    if not settings.enabled:
        return None
    if settings.min_available is not None:
        budget: dict[str, Any] = {"minAvailable": settings.min_available}
    else:
        budget = {"maxUnavailable": settings.max_unavailable or DEFAULT_MAX_UNAVAILABLE}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {
            **budget,
            "selector": {"matchLabels": dict(selector)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
