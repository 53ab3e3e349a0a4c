"""An HTTP client for the content API's public routes (docs/architecture.md §9), used by the demo's self-check
and its traffic generator.

One keep-alive connection per client (the standard library's http.client; not thread-safe, so each
thread makes its own). A connection the server closed while idle is reopened once per request.
"""

from __future__ import annotations

import http.client
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

Event = dict[str, Any]


class ApiError(RuntimeError):
    """An answer the demo did not expect; the message has the route, status and body."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]
    seconds: float  # request sent -> response read


@dataclass(frozen=True)
class Decision:
    slot: str
    variant: str | None
    rule: str | None
    decision_id: str | None
    ruleset_version: int


def make_event(
    kind: str,
    user: str,
    session: str,
    *,
    url: str,
    title: str | None = None,
    properties: Mapping[str, str | int | float] | None = None,
    referrer: str | None = None,
    device: str = "desktop",
) -> Event:
    """A v1 event as tailor.js would send it: a fresh id (the dedup key), the anonymous id, now."""
    page: dict[str, str] = {"url": url}
    if title:
        page["title"] = title
    if referrer:
        page["referrer"] = referrer
    event: Event = {
        "id": str(uuid.uuid4()),
        "type": kind,
        "anonymousId": user,
        "sessionId": session,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "page": page,
        "context": {"device": device, "locale": "en-GB", "userAgent": "tailor-demo"},
    }
    if properties:
        event["properties"] = dict(properties)
    return event


def retry_after(headers: Mapping[str, str], default: float = 0.2, cap: float = 5.0) -> float:
    """Seconds from a Retry-After header (delay-seconds form), else `default`."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "")
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        return default


class ApiClient:
    """`ApiClient("http://127.0.0.1:8001", admin_url="http://127.0.0.1:8004")`: events, decide,
    feedback on the public port; explain, profiles and readiness on the admin port."""

    def __init__(
        self,
        base_url: str,
        admin_token: str | None = None,
        timeout: float = 5.0,
        *,
        admin_url: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.admin_token = admin_token
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        # The admin port's routes go to a client of their own (its own connection).
        self._admin = ApiClient(admin_url, admin_token, timeout) if admin_url else None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._admin is not None:
            self._admin.close()

    def request(
        self, method: str, path: str, body: Any = None, *, admin: bool = False, origin: str | None = None
    ) -> Reply:
        if admin and self._admin is not None:
            return self._admin.request(method, path, body, admin=True, origin=origin)
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        if admin and self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        if origin:
            headers["Origin"] = origin
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            started = time.perf_counter()
            try:
                self._connection.request(method, path, body=payload, headers=headers)
                response = self._connection.getresponse()
                raw = response.read()
            except (http.client.HTTPException, OSError) as error:
                # An idle keep-alive connection the server closed: reopen once.
                self.close()
                if attempt == 2:
                    raise ApiError(f"{method} {path}: {error!r}") from error
                continue
            seconds = time.perf_counter() - started
            if response.getheader("connection", "").lower() == "close":
                self.close()
            content_type = response.getheader("content-type", "")
            parsed: Any = raw
            if "json" in content_type and raw:
                parsed = orjson.loads(raw)
            return Reply(response.status, parsed, dict(response.getheaders()), seconds)
        raise AssertionError("unreachable")

    # --- the public routes -----------------------------------------------------------------------

    def send_events(self, events: Sequence[Event], retry_for: float = 10.0) -> Reply:
        """POST /v1/events until accepted; raises ApiError unless every event was (202, none rejected).

        A 503 (Kafka unavailable, or the collector still starting) is retried after its Retry-After,
        as tailor.js does, for up to `retry_for` seconds: the events keep their ids, so a resend that
        the server had in fact taken is deduplicated by the workers.
        """
        deadline = time.monotonic() + retry_for
        while True:
            reply = self.request("POST", "/v1/events", {"events": list(events)})
            if reply.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(min(retry_after(reply.headers), max(0.0, deadline - time.monotonic())))
        if reply.status != 202 or reply.body.get("rejected"):
            raise ApiError(f"POST /v1/events answered {reply.status}: {reply.body!r}")
        return reply

    def decide(self, user: str, session: str, slots: Sequence[str]) -> tuple[list[Decision], Reply]:
        query = urlencode([("user", user), ("session", session), *(("slot", slot) for slot in slots)])
        reply = self.request("GET", f"/v1/decide?{query}")
        if reply.status != 200:
            raise ApiError(f"GET /v1/decide answered {reply.status}: {reply.body!r}")
        decisions = [
            Decision(d["slot"], d["variant"], d["rule"], d.get("decisionId"), d["rulesetVersion"])
            for d in reply.body["decisions"]
        ]
        return decisions, reply

    def feedback(self, decision_id: str, kind: str) -> Reply:
        reply = self.request("POST", "/v1/feedback", {"decisionId": decision_id, "type": kind})
        if reply.status != 202:
            raise ApiError(f"POST /v1/feedback answered {reply.status}: {reply.body!r}")
        return reply

    def explain(self, user: str, session: str, slot: str) -> Any:
        query = urlencode({"user": user, "session": session, "slot": slot})
        reply = self.request("GET", f"/v1/explain?{query}", admin=True)
        if reply.status != 200:
            raise ApiError(f"GET /v1/explain answered {reply.status}: {reply.body!r}")
        return reply.body

    def profile(self, user: str) -> Any:
        reply = self.request("GET", f"/v1/profiles/{user}", admin=True)
        if reply.status != 200:
            raise ApiError(f"GET /v1/profiles/{user} answered {reply.status}: {reply.body!r}")
        return reply.body

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz", admin=True).status == 200
        except ApiError:
            return False
