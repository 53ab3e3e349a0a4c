"""The operator's Kubernetes calls, in its own words — apply a child, read a Secret, delete, patch a
status, post an Event, create the peering object — on kubernetes_asyncio. kopf watches; this writes.

kubernetes_asyncio runs on aiohttp, as kopf does (one HTTP stack in the process), follows each
Kubernetes release, and brings the credential loaders: the in-cluster service account (its token
re-read as the kubelet rotates it) or a kubeconfig (client certificates, tokens, exec plugins,
`proxy-url`, `tls-server-name`). Resource paths come from the API server's discovery, through the
library's lazy discoverer, so there is no table of plurals to keep. Children are written with
server-side apply under one field manager: one idempotent request creates, updates, or restores an
edited child, and a no-op apply writes nothing. The facade keeps reconcilers in plain dicts (what
kopf hands them and what the builders return), not the library's generated models.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.kube_config import KubeConfigLoader
from kubernetes_asyncio.dynamic import DynamicClient, LazyDiscoverer
from kubernetes_asyncio.dynamic.exceptions import ResourceNotFoundError

from tailor.core import constants
from tailor_operator import conditions
from tailor_operator import constants as names

REQUEST_TIMEOUT_SECONDS: Final = 30
# How long "the server serves no such kind" is believed: asking discovery again for a kind it lacks
# re-reads all of discovery (the library starts over on a miss), so an optional CRD (KEDA's
# ScaledObject) is looked for again at most this often; installing it is noticed within this time.
NOT_SERVED_SECONDS: Final = 300.0
JSON: Final = "application/json"
# Every verb answers one object; "object" asks the library for the decoded JSON as it came.
AS_OBJECT: Final = {200: "object", 201: "object", 202: "object"}


class ApiError(Exception):
    """The API server refused a request (or serves no such kind); `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def _refreshing_exec_token(loader: KubeConfigLoader) -> Callable[[client.Configuration], Awaitable[None]]:
    """A hook the library awaits before each request: re-runs the kubeconfig's exec plugin (as an
    asyncio subprocess) once the credential it gave has expired, as kubectl does."""

    async def refresh(configuration: client.Configuration) -> None:
        await loader.load_from_exec_plugin()
        configuration.api_key["BearerToken"] = loader.token

    return refresh


async def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """In-cluster credentials inside a pod, else `kubeconfig`, KUBECONFIG or ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return configuration
    loader = await config.load_kube_config(
        config_file=kubeconfig, client_configuration=configuration, persist_config=False
    )
    # The library runs an exec plugin once at load; without an expiry its credential is kept, as
    # kubectl keeps it, and with one it is renewed when due.
    if getattr(loader, "exec_plugin_expiry", None) is not None:
        configuration.refresh_api_key_hook = _refreshing_exec_token(loader)
    return configuration


class _Discovery(LazyDiscoverer):
    """The library's lazy discovery (an API group's resources are fetched when first used, and again
    when a kind is not found), kept in this process's memory: its default file cache under /tmp is
    shared by every process that talks to the same server, and can be read half-written."""

    def _write_cache(self) -> None:
        return None


class Kube:
    """One connection pool to the API server, for every reconciler of the process."""

    def __init__(self, configuration: client.Configuration) -> None:
        self._api = client.ApiClient(configuration)
        self._api.user_agent = names.FIELD_MANAGER
        # A cache file name nothing writes (see _Discovery): discovery always starts from the server.
        never_written = os.path.join(tempfile.gettempdir(), f"tailor-discovery-{uuid.uuid4().hex}.json")
        self._dynamic = DynamicClient(self._api, cache_file=never_written, discoverer=_Discovery)
        self._discovered = False
        self._discovering = asyncio.Lock()
        self._not_served: dict[tuple[str, str], float] = {}  # (apiVersion, kind) -> when we asked

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        return cls(await load_configuration(kubeconfig))

    async def close(self) -> None:
        await self._api.close()

    async def path(self, api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
        """The URL path of a kind's collection (no name) or of one object, from discovery."""
        # One lookup at a time: a kind not found makes the library rebuild its cache in place
        # (invalidate_cache, over two requests), and a lookup loading an API group meanwhile would
        # write into it half built (KeyError). A kind already looked up costs no request: short turns.
        async with self._discovering:
            if not self._discovered:
                await self._dynamic  # the server's version and API groups: two requests, once
                self._discovered = True
            try:
                resource = await self._dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise ApiError(404, f"the API server serves no {kind} in {api_version}") from None
        return str(resource.path(name=name, namespace=namespace))

    async def serves(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves the kind (an optional CRD is installed); a no is remembered
        for NOT_SERVED_SECONDS."""
        asked = self._not_served.get((api_version, kind))
        if asked is not None and time.monotonic() - asked < NOT_SERVED_SECONDS:
            return False
        try:
            await self.path(api_version, kind, None)
        except ApiError as error:
            if error.status != 404:
                raise
            self._not_served[(api_version, kind)] = time.monotonic()
            return False
        self._not_served.pop((api_version, kind), None)
        return True

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """The object the server answered; ApiError for any refusal."""
        try:
            result: dict[str, Any] = await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": JSON, "Content-Type": content_type},
                body=body,
                response_types_map=AS_OBJECT,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except client.ApiException as error:
            raise ApiError(error.status, _message(error)) from None
        return result

    # --- the verbs reconcile functions use ------------------------------------------------------------

    async def apply(
        self, manifest: Mapping[str, Any], field_manager: str = names.FIELD_MANAGER, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply under our field manager, taking over fields others changed (drift).
        Another manager, without force, only claims fields no one else has changed (a conflict is a
        409 ApiError)."""
        meta = manifest["metadata"]
        path = await self.path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        return await self.request(
            "PATCH",
            path,
            body=manifest,
            query={"fieldManager": field_manager, **({"force": "true"} if force else {})},
            content_type="application/apply-patch+yaml",  # JSON is YAML
        )

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist (a kind the server does not serve is an ApiError)."""
        path = await self.path(api_version, kind, namespace, name)
        try:
            return await self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """True if something was deleted; its dependents go in the background. A kind the server does
        not serve has nothing to delete."""
        if not await self.serves(api_version, kind):
            return False
        path = await self.path(api_version, kind, namespace, name)
        try:
            await self.request("DELETE", path, body={"propagationPolicy": "Background"})
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch a Tailor resource's status; a resource deleted meanwhile is not an error."""
        api_version = f"{constants.API_GROUP}/{constants.API_VERSION}"
        try:
            path = await self.path(api_version, kind, namespace, name)
            body = {"status": status}
            await self.request(
                "PATCH", f"{path}/status", body=body, content_type="application/merge-patch+json"
            )
        except ApiError as error:
            if error.status != 404:
                raise

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data (base64 values, as stored), or None when it does not exist."""
        secret = await self.get("v1", "Secret", namespace, name)
        return None if secret is None else dict(secret.get("data") or {})

    async def post_event(
        self, involved: Mapping[str, Any], reason: str, message: str, event_type: str = "Warning"
    ) -> None:
        """A core/v1 Event about `involved` (a resource body), for `kubectl describe` and `get events`."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        stamp = conditions.now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'tailor')}.{uuid.uuid4().hex[:12]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": event_type,
            "source": {"component": names.FIELD_MANAGER},
            "reportingComponent": names.FIELD_MANAGER,
            "reportingInstance": os.environ.get("HOSTNAME", "tailor-operator"),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self.request("POST", await self.path("v1", "Event", namespace), body=event)

    async def create_unless_exists(self, manifest: Mapping[str, Any]) -> bool:
        """Create `manifest` (the peering object); False when it already exists."""
        namespace = (manifest.get("metadata") or {}).get("namespace")
        path = await self.path(manifest["apiVersion"], manifest["kind"], namespace)
        try:
            await self.request("POST", path, body=manifest)
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True


def _message(error: client.ApiException) -> str:
    """The API server's own message (its Status object), else the HTTP reason."""
    try:
        status = json.loads(error.body or "")
    except (TypeError, ValueError):
        return str(error.body or error.reason)
    return str(status.get("message") or error.reason) if isinstance(status, dict) else str(status)
