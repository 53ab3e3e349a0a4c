"""A stand-in OpenID Connect provider for the OAUTHBEARER tests: the client credentials grant at
`/token`, over HTTPS with a certificate of the stack's CA, issuing JWTs signed (ES256) with the dev
stack's OIDC key, which the broker validates against the matching JWKS (tailor.devstack's Kafka).

Only what librdkafka's `sasl.oauthbearer.method=oidc` asks of a provider: a POST with the client id
and secret in HTTP Basic, `grant_type=client_credentials`, an `access_token` back. It stands where
Keycloak, Okta or Entra ID would: no provider can be downloaded and run here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tailor.devstack import certs
from tailor.devstack.components.kafka import OIDC_AUDIENCE, OIDC_CLIENT_ID, OIDC_ISSUER, SecureEndpoints


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(key: ec.EllipticCurvePrivateKey, claims: dict[str, Any]) -> str:
    header = {"alg": "ES256", "typ": "JWT", "kid": certs.OIDC_KEY_ID}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class Provider:
    """Counts what it was asked (`issued`, `refused`) so tests can tell the token came from here."""

    def __init__(self, secure: SecureEndpoints, server_pem: Path) -> None:
        loaded = serialization.load_pem_private_key(secure.oidc_signing_key.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        self.key = loaded
        self.client_secret = secure.oidc_client_secret
        self.issued = 0
        self.refused = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = dict(
                    part.split("=", 1) for part in self.rfile.read(length).decode().split("&") if part
                )
                basic = self.headers.get("authorization", "")
                expected = (
                    "Basic "
                    + base64.b64encode(f"{OIDC_CLIENT_ID}:{provider.client_secret}".encode()).decode()
                )
                if basic != expected or form.get("grant_type") != "client_credentials":
                    provider.refused += 1
                    self._reply(401, {"error": "invalid_client"})
                    return
                now = int(time.time())
                claims = {"iss": OIDC_ISSUER, "aud": OIDC_AUDIENCE, "sub": OIDC_CLIENT_ID, "iat": now,
                          "exp": now + 3600, "scope": form.get("scope", "")}  # fmt: skip
                provider.issued += 1
                token = signed_jwt(provider.key, claims)
                self._reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server_pem)  # the broker's: a certificate of the stack's CA for 127.0.0.1
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/token"

    @contextlib.contextmanager
    def running(self) -> Iterator[Provider]:
        thread = threading.Thread(target=self.server.serve_forever, name="oidc-provider", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
