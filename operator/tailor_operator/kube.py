"""A small asyncio Kubernetes client for what reconcile functions do: apply, read, delete, patch status,
post Events. kopf watches; this writes.

It takes its credentials from the kubernetes package's configuration loaders (KUBECONFIG or the
in-cluster service account, token refresh included) and speaks HTTP with aiohttp, which kopf already
runs on, so reconciling never blocks the event loop or a thread pool. Children are written with
server-side apply under one field manager: one idempotent request creates, updates, or restores an
edited child, and a no-op apply writes nothing.
"""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tailor.core import constants
from tailor_operator import conditions
from tailor_operator import constants as names

CORE_PLURALS = {"Service": "services", "Secret": "secrets", "Event": "events", "ConfigMap": "configmaps"}
APPS_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
POLICY_PLURALS = {"PodDisruptionBudget": "poddisruptionbudgets"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def load_configuration(kubeconfig: str | None = None) -> k8s_client.Configuration:
    """In-cluster credentials inside a pod, else KUBECONFIG (or ~/.kube/config)."""
    configuration = k8s_client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    return configuration


def object_path(api_version: str, kind_plural: str, namespace: str | None, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{kind_plural}" if namespace else f"{base}/{kind_plural}"
    return f"{path}/{name}" if name else path


def plural_of(api_version: str, kind: str) -> str:
    if api_version == "v1":
        return CORE_PLURALS[kind]
    if api_version == "apps/v1":
        return APPS_PLURALS[kind]
    if api_version == "policy/v1":
        return POLICY_PLURALS[kind]
    return {
        constants.STACK_KIND: constants.STACK_PLURAL,
        constants.RULE_KIND: constants.RULE_PLURAL,
        constants.VARIANT_KIND: constants.VARIANT_PLURAL,
    }[kind]


class Kube:
    def __init__(self, configuration: k8s_client.Configuration) -> None:
        self._configuration = configuration
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        c = self._configuration
        if not c.verify_ssl:
            return False
        context = (
            ssl.create_default_context(cafile=c.ssl_ca_cert)
            if c.ssl_ca_cert
            else ssl.create_default_context()
        )
        if c.cert_file and c.key_file:
            context.load_cert_chain(c.cert_file, c.key_file)
        return context

    def _headers(self) -> dict[str, str]:
        token = self._configuration.get_api_key_with_prefix(
            "BearerToken"
        ) or self._configuration.get_api_key_with_prefix("authorization")
        return {"Authorization": token} if token else {}

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self._configuration.host,
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=32),
                timeout=aiohttp.ClientTimeout(total=30),
                json_serialize=lambda value: orjson.dumps(value).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """The response object; None for 404 on GET/DELETE; ApiError for any other failure."""
        session = await self._client()
        headers = {**self._headers(), "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = orjson.dumps(body)
        async with session.request(
            method, path.lstrip("/"), data=data, params=params, headers=headers
        ) as response:
            raw = await response.read()
            if response.status == 404 and method in ("GET", "DELETE"):
                return None
            if response.status >= 400:
                try:
                    message = orjson.loads(raw).get("message", raw.decode(errors="replace"))
                except orjson.JSONDecodeError:
                    message = raw.decode(errors="replace")
                raise ApiError(response.status, str(message))
            result: dict[str, Any] = orjson.loads(raw) if raw else {}
            return result

    # --- the verbs reconcile functions use ------------------------------------------------------------

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply under our field manager, taking over fields others changed (drift)."""
        meta = manifest["metadata"]
        path = object_path(
            manifest["apiVersion"],
            plural_of(manifest["apiVersion"], manifest["kind"]),
            meta["namespace"],
            meta["name"],
        )
        result = await self.request(
            "PATCH",
            path,
            body=manifest,
            params={"fieldManager": names.FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",  # JSON is YAML
        )
        assert result is not None
        return result

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        return await self.request(
            "GET", object_path(api_version, plural_of(api_version, kind), namespace, name)
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """True if something was deleted."""
        path = object_path(api_version, plural_of(api_version, kind), namespace, name)
        return await self.request("DELETE", path, body={"propagationPolicy": "Background"}) is not None

    async def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch a Tailor resource's status; a resource deleted meanwhile is not an error."""
        api_version = f"{constants.API_GROUP}/{constants.API_VERSION}"
        path = object_path(api_version, plural_of(api_version, kind), namespace, name) + "/status"
        try:
            await self.request(
                "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
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
        await self.request("POST", object_path("v1", "events", namespace), body=event)

    async def ensure(self, api_version: str, plural: str, manifest: Mapping[str, Any]) -> None:
        """Create `manifest` unless it exists (used for the peering object)."""
        namespace = (manifest.get("metadata") or {}).get("namespace")
        try:
            await self.request("POST", object_path(api_version, plural, namespace), body=manifest)
        except ApiError as error:
            if error.status != 409:
                raise
