"""The demo's web server for examples/storefront: static files, the SDK taken from the content API.

The storefront's pages load `/sdk/tailor.js` from their own origin. Here the shop and the content API
are two origins on 127.0.0.1, as a shop and its Tailor installation usually are, so each page's SDK tag
is pointed at the content API (which serves tailor.js and thereby becomes the SDK's endpoint) and the
stack lists the storefront in `contentApi.corsOrigins` (see manifests.py).

Pages are served under a strict Content-Security-Policy (no 'unsafe-inline', Trusted Types enforced),
which the storefront and the SDK are written to satisfy: the demo shows that this works.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
SDK_TAG = re.compile(rb'<script src="/sdk/tailor\.js"')


def content_security_policy(api_origin: str) -> str:
    """What the pages may load: their own files, and scripts and API calls from the content API."""
    return (
        f"default-src 'none'; script-src 'self' {api_origin}; style-src 'self'; img-src 'self'; "
        f"connect-src {api_origin}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
        "object-src 'none'; require-trusted-types-for 'script'; trusted-types tailor"
    )


def point_sdk_at(html: bytes, api_origin: str) -> bytes:
    """`<script src="/sdk/tailor.js"` becomes `<script src="<api>/sdk/tailor.js"`."""
    replacement = b'<script src="' + api_origin.encode() + b'/sdk/tailor.js"'
    return SDK_TAG.sub(lambda _: replacement, html)


def resolve(root: Path, path: str) -> Path | None:
    """The file or directory under `root` that a URL path names; None outside `root`."""
    target = (root / unquote(path).lstrip("/")).resolve()
    base = root.resolve()
    return target if target == base or base in target.parents else None


class StorefrontServer:
    """examples/storefront on http://host:port, in a background thread."""

    def __init__(self, root: Path, api_origin: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self.api_origin = api_origin.rstrip("/")
        self.csp = content_security_policy(self.api_origin)
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="storefront", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StorefrontServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "tailor-demo-storefront"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the demo's terminal is for what to try, not an access log

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                parts = urlsplit(self.path)
                target = resolve(server.root, parts.path)
                if target is not None and target.is_dir():
                    if not parts.path.endswith("/"):
                        query = f"?{parts.query}" if parts.query else ""
                        self._send(301, b"", "text/plain", body, {"Location": f"{parts.path}/{query}"})
                        return
                    target = target / "index.html"
                if target is None or not target.is_file():
                    self._send(404, b"Not found\n", "text/plain; charset=utf-8", body)
                    return
                content = target.read_bytes()
                content_type = CONTENT_TYPES.get(target.suffix, "application/octet-stream")
                headers = {}
                if target.suffix == ".html":
                    content = point_sdk_at(content, server.api_origin)
                    headers["Content-Security-Policy"] = server.csp
                self._send(200, content, content_type, body, headers)

            def _send(
                self,
                status: int,
                content: bytes,
                content_type: str,
                body: bool,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.send_header("Cache-Control", "no-store")  # edits to examples/storefront show at once
                self.send_header("X-Content-Type-Options", "nosniff")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if body:
                    self.wfile.write(content)

        return Handler
