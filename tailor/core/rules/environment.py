"""What a rule's `when` runs against: its variables' size bounds and the cost it may have.

A `when` runs on the content API's request loop, beside /healthz, for every decision that reaches
its rule, so what it can cost is bounded twice (docs/cel.md, "Cost limits"):

- at compile time, its worst-case cost estimated over the bounds below (tailor.core.cel.cost, the
  approach of the Kubernetes API server's estimator) must fit COST_LIMIT, or the rule is refused
  (`CelCostExceeded`, Ready=False, with the cost, the limit and the costliest part);
- at run time, every evaluation stops at the same figure (its comprehensions charge as they start):
  values larger than their bounds (a profile written under a larger `recentLimit`, say) stop there.

The bounds are what the data plane keeps, given as OpenAPI schemas like a CRD's: a feature is a map
of the stack's windows, each a total and one map per dimension of at most (buckets in the window) x
MAX_FIELDS_PER_BUCKET counters keyed by values of at most MAX_QUERY_LENGTH characters; `recent`
lists hold at most `features.recentLimit` values; ids are at most MAX_ID_LENGTH characters.
"""

from __future__ import annotations

from typing import Any

from tailor.core import constants
from tailor.core.rules.ruleset import FeatureConfig, Trait, Window

# In the units of tailor.core.cel.cost: one comprehension over the largest dimension map with a
# simple predicate fits, two nested do not; what it means in time is measured in docs/cel.md.
COST_LIMIT = 500_000
WINDOW_NAME_LENGTH = 16  # features.windows[] maxLength in the PersonalizationStack CRD
DIMENSION_VALUE_LENGTH = max(constants.MAX_PROPERTY_VALUE_LENGTH, constants.MAX_QUERY_LENGTH)


def _string(length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": length}


def _window(window: Window, dimensions: tuple[str, ...]) -> dict[str, Any]:
    """`views["30m"]`: a total, and per dimension the counters of the window's buckets (each bucket
    holds at most MAX_FIELDS_PER_BUCKET: tailor.core.profile.state)."""
    buckets = -(-window.seconds // window.bucket_seconds)
    per_dimension = {
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "propertyNames": {"maxLength": DIMENSION_VALUE_LENGTH},
        "maxProperties": buckets * constants.MAX_FIELDS_PER_BUCKET,
    }
    return {
        "type": "object",
        "properties": {"total": {"type": "integer"}, **{name: per_dimension for name in dimensions}},
        "additionalProperties": False,
    }


def schemas(features: FeatureConfig) -> dict[str, dict[str, Any]]:
    """The variables of tailor.core.profile.Profile.as_cel, as schemas bounding their sizes."""
    feature = {
        "type": "object",
        "properties": {window.name: _window(window, features.dimensions) for window in features.windows},
        "additionalProperties": False,
    }
    recent_values = {
        "type": "array",
        "items": _string(DIMENSION_VALUE_LENGTH),
        "maxItems": features.recent_limit,
    }
    return {
        **{name: feature for name in constants.FEATURES},
        "recent": {
            "type": "object",
            "properties": {name: recent_values for name in features.dimensions},
            "additionalProperties": False,
        },
        "session": {
            "type": "object",
            "properties": {
                "id": _string(constants.MAX_ID_LENGTH),
                "pageViews": {"type": "integer"},
                "events": {"type": "integer"},
                "durationSeconds": {"type": "integer"},
            },
            "additionalProperties": False,
        },
        "user": {
            "type": "object",
            "properties": {"id": _string(constants.MAX_ID_LENGTH)},
            "additionalProperties": False,
        },
        # The user's declared traits that are set and unexpired (tailor.core.profile.traits).
        "traits": {
            "type": "object",
            "properties": {trait.name: _trait(trait) for trait in features.traits},
            "additionalProperties": False,
        },
    }


def _trait(trait: Trait) -> dict[str, Any]:
    if trait.type == "string":
        return _string(trait.max_length)
    return {"type": trait.type}
