"""Where a user's decision state lives in Redis, beside the profile under the user's hash tag
(tailor.core.profile.store.user_prefix), so one script call can read and write all of it.

    tailor:<ns>/<name>:{<user>}:api:s:<session>  hash   m:<slot> -> rule␟variant (session memory),
                                                        c:<rule> -> impressions this session (caps)
    tailor:<ns>/<name>:{<user>}:api:cap:<rule>   zset   one member per impression, scored by time
                                                        (rules with a per-user cap: caps)
    tailor:<ns>/<name>:{<user>}:api:sup          zset   v:<variant> | t:<tag> -> suppressed until
    tailor:<ns>/<name>:{<user>}:api:rr           hash   rule -> variants served so far (roundRobin)
    tailor:<ns>/<name>:{<user>}:api:fb:…         string one per (session and rule, or a fallback's decision;
                                                        feedback type): counted once

The content API reads and writes them (tailor_api.user_context, feedback); caps.lua checks and
counts caps in them atomically.
"""

from __future__ import annotations

from typing import Final

from tailor.core.profile import store

MEMORY_FIELD_PREFIX: Final = "m:"  # session memory: m:<slot> -> rule␟variant
MEMORY_SEPARATOR: Final = "\x1f"


def api_prefix(stack: str, user: str) -> str:
    return f"{store.user_prefix(stack, user)}api:"


def session_key(stack: str, user: str, session: str) -> str:
    return f"{api_prefix(stack, user)}s:{session}"


def cap_key(stack: str, user: str, rule: str) -> str:
    return f"{api_prefix(stack, user)}cap:{rule}"


def suppression_key(stack: str, user: str) -> str:
    return f"{api_prefix(stack, user)}sup"


def round_robin_key(stack: str, user: str) -> str:
    return f"{api_prefix(stack, user)}rr"


def memory_field(slot: str) -> str:
    return f"{MEMORY_FIELD_PREFIX}{slot}"


def memory_value(rule: str, variant: str) -> str:
    return f"{rule}{MEMORY_SEPARATOR}{variant}"
