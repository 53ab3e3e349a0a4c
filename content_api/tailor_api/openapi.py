"""The OpenAPI 3.1 document of the content API, rebuilt for each ruleset version.

Written by hand against the handlers (schemathesis runs against it in tests), with one live part:
the `slot` parameter lists the slots the served ruleset knows, so generated requests are meaningful.
The event schema is tailor.core.events' own JSON Schema, so the collector and this document agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tailor.core import events
from tailor.core.rules import ruleset
from tailor_api import feedback, ofrep, validation, web

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problems(*statuses: int) -> dict[str, Any]:
    titles = {
        400: "Missing or malformed parameters or body",
        401: "Missing or wrong admin token",
        403: "Refused: admin endpoints disabled (no TAILOR_ADMIN_TOKEN), or a decisionId not issued here",
        404: "Unknown slot",
        408: f"The body did not arrive whole within {web.BODY_SECONDS:g} s",
        413: "Body too large",
        415: "Not JSON (Content-Type: application/json)",
        503: "Not ready (no ruleset yet), Redis/Kafka unavailable, or the route is served by another "
        "replica (`tailor api --routes`); retry after Retry-After",
    }
    return {
        str(s): {"description": titles[s], "content": {"application/problem+json": {"schema": _PROBLEM}}}
        for s in statuses
    }


# Decide, feedback and events with signed user identity (docs/identity.md): optional or required by
# the stack's spec.contentApi.identity.mode, which this document cannot know, so both are listed.
_IDENTITY_SECURITY: list[dict[str, list[str]]] = [{}, {"identityToken": []}]
_IDENTITY_401 = {
    "401": {
        "description": "Identity refused (only with spec.contentApi.identity on): the token is missing "
        "(mode required), expired, signed by an unknown kid or not verified, invalid, or for another user "
        "or session than the request (or the feedback's decision); the problem's type says which "
        "(identity-missing, identity-expired, identity-unknown-kid, identity-bad-signature, "
        "identity-invalid, identity-mismatch)",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _ofrep_paths() -> dict[str, Any]:
    """OFREP's two evaluations (tailor_api.ofrep; docs/openfeature.md), as the protocol's OpenAPI
    document has them, narrowed to what Tailor answers."""
    body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OfrepRequest"}}},
    }
    failure = {"$ref": "#/components/schemas/OfrepFailure"}
    common = {
        "400": _json(failure, "PARSE_ERROR (not JSON), TARGETING_KEY_MISSING or INVALID_CONTEXT"),
        **_problems(408, 413),
        "429": {
            "description": "A rate limit was used up (errorCode GENERAL); retry after Retry-After",
            "headers": {"Retry-After": {"schema": {"type": "string"}}},
            "content": {"application/problem+json": {"schema": _PROBLEM}},
        },
        **_problems(503),
        **_IDENTITY_401,
    }
    return {
        ofrep.BULK_PATH: {
            "post": {
                "operationId": "ofrepEvaluateFlags",
                "summary": "OFREP bulk evaluation: a flag per slot (the context's `slots`, else every slot)",
                "security": _IDENTITY_SECURITY,
                "parameters": [
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "an earlier evaluation's ETag: 304 while every slot shows the same",
                    },
                ],
                "requestBody": body,
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/OfrepFlags"}, "One evaluation per slot")
                    | {"headers": {"ETag": {"schema": {"type": "string"}}}},
                    "304": {"description": "Every slot shows what the If-None-Match's evaluation showed"},
                    **common,
                },
            }
        },
        ofrep.FLAG_LABEL: {
            "post": {
                "operationId": "ofrepEvaluateFlag",
                "summary": "OFREP evaluation of one slot: its value the chosen variant's name",
                "security": _IDENTITY_SECURITY,
                "parameters": [
                    {
                        "name": "key",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "the slot",
                    },
                ],
                "requestBody": body,
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/OfrepFlag"}, "The slot's evaluation"),
                    "404": _json(failure, "FLAG_NOT_FOUND: no such slot in the served ruleset"),
                    **common,
                },
            }
        },
    }


def _ofrep_schemas() -> dict[str, Any]:
    scalar = {"type": ["string", "number", "boolean"]}
    return {
        "OfrepRequest": {
            "type": "object",
            "required": ["context"],
            "properties": {"context": {"$ref": "#/components/schemas/OfrepContext"}},
        },
        "OfrepContext": {
            "type": "object",
            "description": "targetingKey: the user (with an identity token it may be left out: the token's "
            "`sub`); session: the session; slots: the slots a bulk evaluation decides (default: all). "
            "Other attributes are accepted and not used",
            "required": ["targetingKey"],
            "properties": {
                "targetingKey": {"type": "string", "pattern": validation.USER_PATTERN, "maxLength": 128},
                "session": {"type": "string", "pattern": validation.SESSION_PATTERN, "maxLength": 128},
                "slots": {
                    "type": "array",
                    "maxItems": validation.MAX_SLOTS_PER_REQUEST,
                    "items": {"type": "string", "pattern": validation.SLOT_PATTERN},
                },
            },
        },
        "OfrepFlag": {
            "type": "object",
            "required": ["key", "reason", "metadata"],
            "description": "value and variant: the variant's name (none: use the code default); metadata: "
            "decisionId (for /v1/feedback), rulesetVersion, content (JSON text), rule",
            "properties": {
                "key": {"type": "string"},
                "value": {"type": "string"},
                "variant": {"type": "string"},
                "reason": {"enum": ["TARGETING_MATCH", "DEFAULT"]},
                "metadata": {"type": "object", "additionalProperties": scalar},
            },
        },
        "OfrepFailure": {
            "type": "object",
            "required": ["errorCode", "errorDetails"],
            "properties": {
                "key": {"type": "string"},
                "errorCode": {"enum": list(ofrep.ERROR_CODES)},
                "errorDetails": {"type": "string"},
            },
        },
        "OfrepFlags": {
            "type": "object",
            "required": ["flags", "metadata"],
            "properties": {
                "flags": {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/OfrepFlag"},
                            {"$ref": "#/components/schemas/OfrepFailure"},
                        ]
                    },
                },
                "metadata": {"type": "object", "additionalProperties": scalar},
            },
        },
    }


def _event_schemas() -> dict[str, Any]:
    """tailor.core.events' schema, its $defs moved to components (refs rewritten to match)."""
    schema = events.json_schema()
    definitions = schema.pop("$defs", {})
    schema.pop("$schema", None)
    schema.pop("$id", None)
    text = orjson.dumps({"Event": schema, **definitions}).replace(b'"#/$defs/', b'"#/components/schemas/')
    loaded: dict[str, Any] = orjson.loads(text)
    return loaded


TRAITS_PATH = "/v1/profiles/{user}/traits"


def document(
    slots: Sequence[str], paths: Sequence[str], traits: Sequence[ruleset.Trait] = ()
) -> dict[str, Any]:
    """The document of one listener: its `paths` (the public port's or the admin port's). The traits
    PUT is listed only while the stack declares traits, with their schemas: without any, no body is
    valid."""
    whole = _document(slots)
    whole["paths"] = {
        path: item
        for path, item in whole["paths"].items()
        if path in paths and (path != TRAITS_PATH or traits)
    }
    if TRAITS_PATH in whole["paths"]:
        body = whole["paths"][TRAITS_PATH]["put"]["requestBody"]["content"]["application/json"]
        body["schema"] = {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {trait.name: _trait_schema(trait) for trait in traits},
        }
    return whole


def _trait_schema(trait: ruleset.Trait) -> dict[str, Any]:
    """A trait's values as JSON Schema (tailor.core.profile.traits.validate's checks); null unsets."""
    if trait.type == "number":
        schema: dict[str, Any] = {"type": "number"}
        if trait.minimum is not None:
            schema["minimum"] = trait.minimum
        if trait.maximum is not None:
            schema["maximum"] = trait.maximum
    elif trait.type == "string":
        schema = {"type": "string", "maxLength": trait.max_length}
        if trait.values:
            schema["enum"] = list(trait.values)
    else:
        schema = {"type": "boolean"}
    return {"anyOf": [schema, {"type": "null"}]}


def _document(slots: Sequence[str]) -> dict[str, Any]:
    slot_schema: dict[str, Any] = {"type": "string", "pattern": validation.SLOT_PATTERN, "maxLength": 63}
    if slots:
        slot_schema = {"type": "string", "enum": sorted(slots)}
    user = {"type": "string", "pattern": validation.USER_PATTERN, "maxLength": 128}
    session = {"type": "string", "pattern": validation.SESSION_PATTERN, "maxLength": 128}
    decide_params = [
        {
            **_query(
                "slot",
                {
                    "type": "array",
                    "items": slot_schema,
                    "minItems": 1,
                    "maxItems": validation.MAX_SLOTS_PER_REQUEST,
                },
                "slot(s) to decide; repeat for several",
                required=True,
            ),
            "style": "form",
            "explode": True,
        },
        _query(
            "user",
            user,
            "user or anonymous id; with an identity token it may be left out (the token's `sub`)",
            required=True,
        ),
        _query(
            "session",
            session,
            "session id (keeps a slot stable within the session); with an identity token, its `sid`",
            required=False,
        ),
    ]
    explain_params = decide_params
    bearer: list[dict[str, list[str]]] = [{"adminToken": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tailor content API",
            "version": "1",
            "description": "Real-time personalization decisions, event collection and feedback.",
        },
        "paths": {
            "/v1/decide": {
                "get": {
                    "operationId": "decide",
                    "summary": "Decide the content of one or more slots for a user",
                    "parameters": decide_params,
                    "security": _IDENTITY_SECURITY,
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Decisions"}, "One decision per slot")
                        | {"headers": {"X-Tailor-Ruleset-Version": {"schema": {"type": "string"}}}},
                        **_problems(400, 404, 503),
                        **_IDENTITY_401,
                    },
                }
            },
            "/v1/feedback": {
                "post": {
                    "operationId": "feedback",
                    "summary": "Report what the user did with a decision",
                    "security": _IDENTITY_SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}
                        },
                    },
                    "responses": {
                        "202": _json({"$ref": "#/components/schemas/FeedbackAccepted"}, "Recorded"),
                        **_problems(400, 403, 408, 413, 503),
                        **_IDENTITY_401,
                    },
                }
            },
            "/v1/events": {
                "post": {
                    "operationId": "collectEvents",
                    "summary": "Collect one event or a batch; 202 once Kafka acknowledged every accepted one",
                    "security": _IDENTITY_SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Event"},
                                        {
                                            "type": "object",
                                            "required": ["events"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "events": {
                                                    "type": "array",
                                                    "minItems": 1,
                                                    "description": "at most the stack's "
                                                    "spec.api.maxBatchEvents (413 beyond). Each item is "
                                                    "judged alone: the valid ones are accepted, the others "
                                                    "come back in `rejected`; 400 when none is valid",
                                                    "contains": {"$ref": "#/components/schemas/Event"},
                                                }
                                            },
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json({"$ref": "#/components/schemas/EventsAccepted"}, "Accepted"),
                        **_problems(400, 408, 413, 503),
                        **_IDENTITY_401,
                    },
                }
            },
            "/v1/graphql": {
                "post": {
                    "operationId": "graphql",
                    "summary": "GraphQL: the decide query, the feedback and events mutations",
                    "description": "The schema, limits and errors: docs/content-api.md#graphql "
                    "(introspection is off unless `tailor api --graphql-introspection`). A field refused "
                    "as REST refuses it carries REST's problem in its error's `extensions`; Retry-After "
                    "and WWW-Authenticate come as on REST. A document refused before it ran (syntax, "
                    "validation, depth, cost, introspection) gets 200 with `errors` and no `data`, as "
                    "GraphQL over HTTP asks of JSON replies; 400: the body is no GraphQL request.",
                    "security": _IDENTITY_SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["query"],
                                    "properties": {
                                        "query": {"type": "string"},
                                        "variables": {"type": ["object", "null"]},
                                        "operationName": {"type": ["string", "null"]},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/GraphQLResult"}, "Executed"),
                        "400": _json({"$ref": "#/components/schemas/GraphQLResult"}, "Not a GraphQL request"),
                        **_problems(408, 413, 415, 503),
                    },
                }
            },
            "/v1/explain": {
                "get": {
                    "operationId": "explain",
                    "summary": "Why a decision comes out as it does (admin)",
                    "security": bearer,
                    "parameters": explain_params,
                    "responses": {
                        "200": _json({"type": "object"}, "Every rule considered, with values and outcomes"),
                        **_problems(400, 401, 403, 404, 503),
                    },
                }
            },
            "/v1/profiles/{user}": {
                "get": {
                    "operationId": "profile",
                    "summary": "A user's live features (admin)",
                    "security": bearer,
                    "parameters": [
                        {"name": "user", "in": "path", "required": True, "schema": user},
                        _query("session", session, "include this session's counters", required=False),
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Profile"}, "The profile"),
                        **_problems(400, 401, 403, 503),
                    },
                }
            },
            "/v1/profiles/{user}/traits": {
                "put": {
                    "operationId": "putTraits",
                    "summary": "Set a user's traits, checked against the stack's spec.traits (admin)",
                    "description": "An object of trait name -> value (null unsets one). One bad trait "
                    "refuses the whole write: the 400 names each bad trait and what was wrong "
                    "(docs/traits.md).",
                    "security": bearer,
                    "parameters": [{"name": "user", "in": "path", "required": True, "schema": user}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "additionalProperties": {"type": ["number", "string", "boolean", "null"]},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json({"type": "object"}, "Written: how many, and the values"),
                        **_problems(400, 401, 403, 408, 413, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "responses": {"200": _json({"type": "object"}, "The process is alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "description": "Can this replica answer what it serves (decisions: a ruleset and "
                    "Redis; a collector of its own: a ruleset and the collector running). Kafka is "
                    "reported in `checks.kafka` (a Kinesis stream in `checks.kinesis`), never required.",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Readiness"}, "Ready"),
                        "503": _json({"$ref": "#/components/schemas/Readiness"}, "Not ready, and why"),
                    },
                }
            },
            "/readyz/collector": {
                "get": {
                    "operationId": "collectorReadyz",
                    "description": "Can events be collected now: a ruleset, the collector running and "
                    "Kafka (or the Kinesis stream) reachable (for monitors, not for probes). Not served "
                    "by `--routes decide`.",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Readiness"}, "Collecting"),
                        "503": _json({"$ref": "#/components/schemas/Readiness"}, "Not collecting, and why"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {"200": _json({"type": "object"}, "This document")},
                }
            },
            "/sdk/tailor.js": {
                "get": {
                    "operationId": "sdk",
                    "responses": {
                        "200": {
                            "description": "The browser SDK",
                            "content": {"text/javascript": {"schema": {"type": "string"}}},
                        },
                        "404": {
                            "description": "The SDK is not part of this installation",
                            "content": {"application/problem+json": {"schema": _PROBLEM}},
                        },
                    },
                }
            },
            **_ofrep_paths(),
        },
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "identityToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A short-lived JWT from the shop's backend: `sub` the user, `sid` the "
                    "session, `iat`, `exp`, a `kid` header (docs/identity.md)",
                },
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "parameter": {"type": "string"},
                    },
                },
                "Content": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["html", "text", "json", "image"]},
                        "body": {"type": "string"},
                        "data": {},
                    },
                },
                "Decision": {
                    "type": "object",
                    "required": ["slot", "variant", "rule", "content", "decisionId", "rulesetVersion"],
                    "properties": {
                        "slot": {"type": "string"},
                        "variant": {"type": ["string", "null"]},
                        "rule": {"type": ["string", "null"]},
                        "content": {"oneOf": [{"$ref": "#/components/schemas/Content"}, {"type": "null"}]},
                        "decisionId": {"type": "string"},
                        "rulesetVersion": {"type": "integer"},
                    },
                },
                "Decisions": {
                    "type": "object",
                    "required": ["decisions"],
                    "properties": {
                        "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}}
                    },
                },
                "Feedback": {
                    "type": "object",
                    "required": ["decisionId", "type"],
                    "properties": {
                        "decisionId": {"type": "string", "pattern": validation.DECISION_ID_PATTERN},
                        "type": {"enum": list(feedback.TYPES)},
                    },
                },
                "FeedbackAccepted": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"enum": ["accepted", "duplicate"]}},
                },
                "EventsAccepted": {
                    "type": "object",
                    "required": ["accepted", "rejected", "notCounted"],
                    "properties": {
                        "accepted": {"type": "integer"},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"index": {"type": "integer"}, "errors": {"type": "array"}},
                            },
                        },
                        "notCounted": {
                            "description": "Accepted events (on the topic) that no window will count: stamped"
                            " further back than the stack's allowed lateness. Do not send them again.",
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["index", "id", "reason", "message"],
                                "properties": {
                                    "index": {"type": "integer"},
                                    "id": {"type": "string"},
                                    "reason": {"enum": ["late"]},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "GraphQLResult": {
                    "type": "object",
                    "properties": {
                        "data": {"type": ["object", "null"]},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["message"],
                                "properties": {
                                    "message": {"type": "string"},
                                    "extensions": {"type": "object"},
                                },
                            },
                        },
                    },
                },
                "Profile": {
                    "type": "object",
                    "required": ["user", "counts", "recent", "session"],
                    "properties": {
                        "user": {"type": "string"},
                        "counts": {"type": "object", "additionalProperties": {"type": "object"}},
                        "recent": {"type": "object"},
                        "session": {"type": ["object", "null"]},
                        "suppressed": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Readiness": {
                    "type": "object",
                    "required": ["ready", "routes", "checks"],
                    "properties": {
                        "ready": {"type": "boolean"},
                        "routes": {"type": "string", "enum": ["all", "decide", "collect"]},
                        "checks": {
                            "type": "object",
                            "description": "ruleset, redis, and where it collects collector and kafka: "
                            "each {ok, detail, required}; ready is every required check ok. The ruleset's "
                            "has its version, and while the replica serves an older one than is "
                            "published, published and stale (it stays ready)",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["ok", "required"],
                                "properties": {"ok": {"type": "boolean"}, "required": {"type": "boolean"}},
                            },
                        },
                    },
                },
                **_ofrep_schemas(),
                **_event_schemas(),
            },
        },
    }
