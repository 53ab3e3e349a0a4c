"""What the API accepts from outside: lengths and character sets of user, session, slot and tokens.

Identifiers end up inside Redis keys (users are the Redis Cluster hash tag, so braces are refused) and
inside signed decision tokens, so they are checked before anything else touches them. Users and
sessions follow the one id grammar the collector's events follow too (tailor.core.constants.ID_PATTERN).
Every pattern is matched whole (`fullmatch`): with `match`, `$` lets a final newline through, and
`user=alice%0A` would be another user, and a forged line in the logs.
"""

from __future__ import annotations

import re
from typing import Final

from tailor.core import constants

USER_PATTERN: Final = constants.ID_PATTERN
SESSION_PATTERN: Final = f"^(?:{constants.ID_PATTERN[1:-1]})?$"  # empty: no session
SLOT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$"
MAX_SLOTS_PER_REQUEST: Final = 16
DECISION_ID_PATTERN: Final = (
    r"^[A-Za-z0-9_-]{1,1000}[.][A-Za-z0-9_-]{1,23}$"  # base64url payload "." base64url MAC
)

_USER = re.compile(USER_PATTERN)
_SESSION = re.compile(SESSION_PATTERN)
_SLOT = re.compile(SLOT_PATTERN)
_DECISION_ID = re.compile(DECISION_ID_PATTERN)


def decision_id(value: object) -> str:
    if not isinstance(value, str) or not _DECISION_ID.fullmatch(value):
        raise InvalidParameter("decisionId", "`decisionId` must be the string a /v1/decide response gave")
    return value


class InvalidParameter(ValueError):
    """A parameter from outside is missing or malformed; `parameter` names it, the message says why."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def user(value: str | None, parameter: str = "user") -> str:
    if not value:
        raise InvalidParameter(parameter, f"`{parameter}` is required: the user (or anonymous) id")
    if len(value) > constants.MAX_ID_LENGTH or not _USER.fullmatch(value):
        raise InvalidParameter(parameter, f"`{parameter}` must be {constants.ID_CHARACTERS}")
    return value


def session(value: str | None) -> str:
    """The session id; optional (an empty session is one long session for the user)."""
    if value is None or value == "":
        return ""
    if len(value) > constants.MAX_ID_LENGTH or not _SESSION.fullmatch(value):
        raise InvalidParameter("session", f"`session` must be empty (none) or {constants.ID_CHARACTERS}")
    return value


def slots(values: list[str]) -> tuple[str, ...]:
    if not values:
        raise InvalidParameter("slot", "at least one `slot` is required (repeat it for several slots)")
    if len(values) > MAX_SLOTS_PER_REQUEST:
        raise InvalidParameter("slot", f"at most {MAX_SLOTS_PER_REQUEST} slots per request")
    for value in values:
        if not _SLOT.fullmatch(value):
            raise InvalidParameter(
                "slot", f"slot {value[:70]!r} must be 1-63 characters of letters, digits and . _ -"
            )
    return tuple(dict.fromkeys(values))  # a slot asked for twice is decided once
