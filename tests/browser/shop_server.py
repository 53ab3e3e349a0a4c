"""A real local HTTP server for the browser tests of tailor.js and the storefront.

`ShopServer` serves the example storefront (examples/storefront), the SDK at /sdk/tailor.js, and the
content API's routes (/v1/events, /v1/decide, /v1/feedback) per docs/architecture.md §9, recording
every request. It is the stand-in for the content API until tests run against the whole stack: real
HTTP, real browser networking (keepalive, beacons, CORS preflights, offline mode), so delivery and
rendering semantics are tested for what they are. Like the workers, it deduplicates events by id, so a
test can assert "every event exactly once" as the real pipeline would count them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO = Path(__file__).resolve().parents[2]
STOREFRONT = REPO / "examples" / "storefront"
SDK = REPO / "sdk" / "tailor.js"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".png": "image/png",
}
SDK_TAG = re.compile(r'<script src="/sdk/tailor\.js"([^>]*)>')

#: A policy with no 'unsafe-inline' anywhere, Trusted Types enforced (tailor.js's policy allowed).
STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'; "
    "require-trusted-types-for 'script'; trusted-types tailor"
)


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0
    answer: Any = None

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


Responder = Callable[[Recorded], Answer | None]


class ShopServer:
    """One origin on 127.0.0.1: the storefront and/or the API routes. Tests set `respond_events`,
    `respond_decide`, `decisions`, `decide_delay`, `decide_gate`, `csp`, `script_attributes`,
    `sdk_src`, `extra_pages` and `extra_scripts` to shape the answers."""

    def __init__(self, root: Path = STOREFRONT) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.decisions: dict[str, dict[str, Any]] = {}
        self.respond_events: Responder | None = None
        self.respond_decide: Responder | None = None
        self.decide_delay = 0.0  # seconds before the default /v1/decide answer (a slow network)
        # When an Event, every /v1/decide answer waits until it is set: a test releases the decision
        # at the moment it chooses (e.g. once the fallback has been painted), whatever the load.
        self.decide_gate: threading.Event | None = None
        self.csp: str | None = None
        self.cors_origin: str | None = None  # set to allow a storefront on another origin
        self.script_attributes = ""  # added to the storefront's tailor.js <script> tag
        self.sdk_src: str | None = None  # another URL for tailor.js (e.g. the API origin's)
        self.extra_pages: dict[str, str] = {}  # path -> HTML, for pages only a test needs
        self.extra_scripts: dict[str, bytes] = {}  # path -> JavaScript (e.g. a bundle a test built)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="shop-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> ShopServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    # --- what the tests read --------------------------------------------------------------------

    def recorded(self, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def events_on_wire(self) -> list[dict[str, Any]]:
        """Every event posted, duplicates included, whatever the answer."""
        return [e for r in self.recorded("/v1/events") if isinstance(r.json, dict) for e in r.json["events"]]

    def kept_events(self) -> list[dict[str, Any]]:
        """Events of 202-answered posts, deduplicated by id (what the pipeline would count)."""
        kept: dict[str, dict[str, Any]] = {}
        for request in self.recorded("/v1/events"):
            if request.status != 202 or not isinstance(request.json, dict):
                continue
            for event in request.json["events"]:
                kept.setdefault(event["id"], event)
        return list(kept.values())

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "a condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.02)

    # --- answers --------------------------------------------------------------------------------

    def answer_events(self, request: Recorded) -> Answer:
        custom = self.respond_events(request) if self.respond_events else None
        if custom is not None:
            return custom
        payload = request.json
        if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
            return Answer(400, {"accepted": 0, "rejected": [], "detail": 'expected {"events": [...]}'})
        return Answer(202, {"accepted": len(payload["events"]), "rejected": []})

    def answer_decide(self, request: Recorded) -> Answer:
        custom = self.respond_decide(request) if self.respond_decide else None
        if custom is not None:
            return custom
        out = []
        for slot in request.query.get("slot", []):
            decision = self.decisions.get(slot)
            if decision is None:
                out.append(
                    {
                        "slot": slot,
                        "variant": None,
                        "rule": None,
                        "content": None,
                        "decisionId": None,
                        "rulesetVersion": 1,
                    }
                )
            else:
                out.append({"slot": slot, "rulesetVersion": 1, **decision})
        return Answer(200, {"decisions": out}, {"X-Tailor-Ruleset-Version": "1"}, delay=self.decide_delay)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output for failures

            def do_OPTIONS(self) -> None:  # CORS preflight, as the content API answers it
                self._reply(Answer(204), cors_preflight=True)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Recorded(
                    method,
                    parts.path,
                    parse_qs(parts.query),
                    dict(self.headers.items()),
                    body,
                    time.monotonic(),
                )
                if parts.path.startswith("/v1/"):
                    with server.lock:
                        server.requests.append(request)
                    if parts.path == "/v1/events" and method == "POST":
                        answer = server.answer_events(request)
                    elif parts.path == "/v1/decide" and method == "GET":
                        if server.decide_gate is not None:
                            server.decide_gate.wait(timeout=30)  # bounded: a test that forgets fails
                        answer = server.answer_decide(request)
                    elif parts.path == "/v1/feedback" and method == "POST":
                        answer = Answer(202, {})
                    else:
                        answer = Answer(404, {"title": "Not found"})
                    request.status, request.answer = answer.status, answer.body
                    if answer.delay:
                        time.sleep(answer.delay)
                    self._reply(answer)
                elif method == "GET":
                    self._static(parts.path, parts.query)
                else:
                    self._reply(Answer(405, {"title": "Method not allowed"}))

            def _static(self, path: str, query: str) -> None:
                if path in server.extra_pages:
                    self._send(200, server.extra_pages[path].encode(), TYPES[".html"])
                    return
                if path in server.extra_scripts:
                    self._send(200, server.extra_scripts[path], TYPES[".js"])
                    return
                if path == "/sdk/tailor.js":
                    self._send(200, SDK.read_bytes(), TYPES[".js"])
                    return
                target = (server.root / unquote(path).lstrip("/")).resolve()
                if server.root.resolve() not in (target, *target.parents):
                    self._reply(Answer(404, {"title": "Not found"}))
                    return
                if target.is_dir():
                    if not path.endswith("/"):
                        location = path + "/" + (f"?{query}" if query else "")
                        self._reply(Answer(301, None, {"Location": location}))
                        return
                    target = target / "index.html"
                if not target.is_file():
                    self._reply(Answer(404, {"title": "Not found"}))
                    return
                content = target.read_bytes()
                if target.suffix == ".html" and (server.script_attributes or server.sdk_src):
                    src = server.sdk_src or "/sdk/tailor.js"
                    extra = server.script_attributes
                    content = SDK_TAG.sub(
                        lambda m: f'<script src="{src}"{m.group(1)} {extra}>', content.decode()
                    )
                    content = content.encode()
                self._send(200, content, TYPES.get(target.suffix, "application/octet-stream"))

            def _send(
                self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if server.csp and content_type.startswith("text/html"):
                    self.send_header("Content-Security-Policy", server.csp)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _reply(self, answer: Answer, cors_preflight: bool = False) -> None:
                headers = dict(answer.headers)
                if server.cors_origin and self.headers.get("Origin") == server.cors_origin:
                    headers["Access-Control-Allow-Origin"] = server.cors_origin
                    headers["Vary"] = "Origin"
                    if cors_preflight:
                        headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                        headers["Access-Control-Allow-Headers"] = "content-type"
                        headers["Access-Control-Max-Age"] = "600"
                body = b"" if answer.body is None else json.dumps(answer.body).encode()
                self._send(answer.status, body, "application/json", headers)

        return Handler
