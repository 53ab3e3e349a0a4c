"""Compiles one namespace's PersonalizationStack, PersonalizationRules and ContentVariants into a Ruleset.

The operator calls `compile_namespace` on every change; `tailor validate` calls it on manifest files.
Each resource is checked on its own (its spec, then its meaning against the stack and the variants),
and every failure is reported against that resource as a `Problem` (kind/name, CamelCase reason,
message). What gets published follows the last-good policy, so that a bad push never blanks a site:

1. The stack must be valid. If there is none, or it fails, nothing is published (`held`): the ruleset
   already in Redis keeps serving, whatever state the rules and variants are in.
2. A rule or variant that fails keeps its *last good compiled form*, the one in `previous` (the
   ruleset currently served), so an edit that breaks a live rule leaves the live rule as it was.
3. A failing resource that was never published is left out; everything else publishes.
4. The kept forms must still fit the rest of the new ruleset: a kept rule's variants must all be in
   it, on the rule's slot, and its windows and dimensions still declared by the stack. If one does
   not fit, nothing is published (`held`), with a problem naming that rule: serving it changed would
   be a bad push, dropping it would be one too.
5. Two rules of one slot at one priority: the rule that held that place in `previous` keeps it, else
   the older one (creation time, then name); the other fails with PriorityConflict (and then follows 2-3).
6. Deleting a resource removes it from the next ruleset (through 4: a rule that names a deleted variant
   holds publishing until the rule is fixed).

Per-resource work is cached by spec content in a `Cache` so that the operator recompiles a namespace
of thousands of resources in milliseconds when one of them changes.

This is the *compile* stage, the control plane's; the data plane's *load* stage
(tailor.core.decision.engine.load) derives the engine from the published Ruleset without checking it
again. A rule's `when` is compiled by `compile_when` here in both stages, once per process.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import math
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pydantic

from tailor.core import cel, constants, durations
from tailor.core.rules import environment, ruleset, sanitize, specs

MAX_BUCKETS = 60
MAX_SEGMENTS = 64  # a contextual bandit's distinct segments (docs/rules: rotation.context)
MAX_PRIOR_WEIGHT = 10_000.0
DEDUP_TTL_SECONDS = 86400  # dedup marks live at least a day, longer when a window is longer

Outcome = Literal["published", "kept", "omitted"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one resource, in words its author can act on."""

    kind: str
    name: str
    reason: str  # CamelCase, for conditions and Events
    message: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def __str__(self) -> str:
        return f"{self.ref}: {self.message}"


@dataclass(frozen=True, slots=True)
class ResourceResult:
    """What became of one resource: `published` (this generation is in the ruleset), `kept` (its
    previous compiled form is), or `omitted` (it is not in the ruleset)."""

    source: specs.Source
    outcome: Outcome
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CompileResult:
    namespace: str
    ruleset: ruleset.Ruleset | None  # None: nothing may be published (see `held`)
    held: Problem | None  # why nothing may be published; the served ruleset stays
    resources: dict[tuple[str, str], ResourceResult]  # (kind, name) -> result

    @property
    def problems(self) -> list[Problem]:
        found = [problem for result in self.resources.values() for problem in result.problems]
        if self.held is not None and self.held not in found:
            found.append(self.held)
        return found


@dataclass
class Cache:
    """Per-resource compile results keyed by everything they depend on."""

    variants: dict[tuple[str, bytes, bytes], ruleset.Variant | Problem] = field(default_factory=dict)
    rules: dict[tuple[str, int, bytes, bytes], tuple[specs.RuleSpec, ruleset.Rule] | Problem] = field(
        default_factory=dict
    )

    def trim(self, limit: int = 50_000) -> None:
        for table in (self.variants, self.rules):
            if len(table) > limit:
                table.clear()


# --- the stack ---------------------------------------------------------------------------------------


def bucket_seconds(window_seconds: int) -> int:
    """The smallest bucket that divides the window into at most MAX_BUCKETS buckets (5m -> 5s, 24h -> 24m)."""
    smallest = max(1, math.ceil(window_seconds / MAX_BUCKETS))
    return next(size for size in range(smallest, window_seconds + 1) if window_seconds % size == 0)


def lateness_seconds(windows: Sequence[ruleset.Window], chosen: int | None) -> int:
    """How far behind its ingestion an event may be and still be counted: what the stack chose, at
    most the horizon (an older event can change no window); by default the horizon itself."""
    horizon = ruleset.horizon_seconds(windows)
    return horizon if chosen is None else min(chosen, horizon)


def dedup_ttl_seconds(windows: Sequence[ruleset.Window]) -> int:
    """How long dedup marks live: a day, or longer when a window is (a mark must outlive every event
    that can still be counted, or a resend of one would count twice)."""
    return max(DEDUP_TTL_SECONDS, ruleset.horizon_seconds(windows))


TOPIC_PREFIX = "tailor"


def topic_names(namespace: str, name: str, topics: specs.KafkaTopics) -> tuple[str, str]:
    """The events and dead-letter topics: as the spec names them, else qualified by the stack
    (`tailor.<namespace>.<stack>.events`, `....deadletter`), so two stacks on one Kafka never share
    one. Namespaces and stack names are DNS labels (a-z, 0-9, -: no `.` or `_`), so qualified names
    are legal topic names, at most 132 characters (Kafka allows 249), and no two of them collide in
    Kafka's metric names, where `.` and `_` are the same character."""
    prefix = f"{TOPIC_PREFIX}.{namespace}.{name}"
    events = topics.events or f"{prefix}.events"
    dead_letter = topics.dead_letter or f"{prefix}.deadletter"
    if events == dead_letter:
        raise ValueError(f"kafka.topics: events and deadLetter are the same topic, {events}")
    return events, dead_letter


def traits_topic_name(namespace: str, name: str, topics: specs.KafkaTopics, declared: bool) -> str:
    """The traits topic (docs/traits.md): as the spec names it, else qualified by the stack like the
    events topic; "" while the stack declares no traits (nothing consumes or makes it)."""
    if not declared:
        return ""
    chosen = topics.traits or f"{TOPIC_PREFIX}.{namespace}.{name}.traits"
    if chosen in topic_names(namespace, name, topics):
        raise ValueError(f"kafka.topics.traits: {chosen} is already the events or dead-letter topic")
    return chosen


def traits(spec: Sequence[specs.TraitSpec]) -> tuple[ruleset.Trait, ...]:
    """The declared traits; ValueError names the bad one (the CRD refuses most of these already)."""
    seen: set[str] = set()
    out = []
    for index, trait in enumerate(spec):
        where = f"traits[{index}]"
        if trait.name in seen:
            raise ValueError(f"{where}.name: {trait.name!r} is declared twice")
        seen.add(trait.name)
        if trait.minimum is not None and trait.maximum is not None and trait.minimum > trait.maximum:
            raise ValueError(f"{where}: minimum {trait.minimum} is above maximum {trait.maximum}")
        out.append(
            ruleset.Trait(
                name=trait.name,
                type=trait.type,
                ttl_seconds=_duration(f"{where}.ttl", trait.ttl),
                minimum=trait.minimum,
                maximum=trait.maximum,
                values=tuple(trait.values),
                max_length=trait.max_length,
            )
        )
    return tuple(out)


def stack_config(namespace: str, name: str, spec: specs.StackSpec) -> ruleset.StackConfig:
    """The data plane's configuration from a stack spec; ValueError names the bad field."""
    windows = []
    for text in spec.features.windows:
        seconds = _duration(f"features.windows[{text}]", text)
        windows.append(ruleset.Window(name=text, seconds=seconds, bucket_seconds=bucket_seconds(seconds)))
    lateness = spec.features.allowed_lateness
    chosen = None if lateness is None else _duration("features.allowedLateness", lateness)
    # A Kinesis stack has no Kafka: its pods never read these settings (TAILOR_EVENTS_SOURCE=kinesis,
    # docs/kinesis.md), which then name no brokers and the default topics.
    kafka = spec.kafka or specs.KafkaSpec(bootstrap_servers="")
    events_topic, dead_letter_topic = topic_names(namespace, name, kafka.topics)
    for where, retention in (
        ("kafka.topics.retention", kafka.topics.retention),
        ("kafka.topics.deadLetterRetention", kafka.topics.dead_letter_retention),
    ):
        if retention is not None:
            _duration(where, retention)
    return ruleset.StackConfig(
        namespace=namespace,
        name=name,
        kafka=ruleset.KafkaConfig(
            bootstrap_servers=kafka.bootstrap_servers,
            events_topic=events_topic,
            dead_letter_topic=dead_letter_topic,
            traits_topic=traits_topic_name(namespace, name, kafka.topics, bool(spec.traits)),
            partitions=kafka.partitions,
            security=kafka_security(kafka.security),
        ),
        features=ruleset.FeatureConfig(
            windows=tuple(windows),
            dimensions=tuple(spec.features.dimensions),
            allowed_lateness_seconds=lateness_seconds(windows, chosen),
            dedup_ttl_seconds=dedup_ttl_seconds(windows),
            recent_limit=spec.features.recent_limit,
            session_timeout_seconds=_duration("features.sessionTimeout", spec.features.session_timeout),
            traits=traits(spec.traits),
        ),
        api=ruleset.ApiConfig(
            cors_origins=tuple(spec.content_api.cors_origins),
            suppression_seconds=_duration("contentApi.suppression", spec.content_api.suppression),
            max_batch_events=spec.content_api.max_batch_events,
            max_body_bytes=spec.content_api.max_body_bytes,
            rate_limits=rate_limits(spec.content_api.rate_limits),
        ),
        kill_switch=spec.kill_switch,
    )


def kafka_security(spec: specs.KafkaSecuritySpec | None) -> ruleset.KafkaSecurity:
    """What the clients need to know of the stack's Kafka security: settings, and which Secret keys to
    read (never their values: the ruleset is readable by every pod)."""
    if spec is None:
        return ruleset.KafkaSecurity()
    tls = None
    if spec.tls is not None:
        ca, client = spec.tls.ca_secret_ref, spec.tls.client_certificate_secret_ref
        tls = ruleset.KafkaTls(
            ca=ruleset.SecretFile(secret=ca.name, key=ca.key) if ca else None,
            certificate=ruleset.SecretFile(secret=client.name, key=client.certificate) if client else None,
            key=ruleset.SecretFile(secret=client.name, key=client.key) if client else None,
            verify_hostname=spec.tls.verify_hostname,
        )
    sasl = None
    if spec.sasl is not None:
        password, oidc = spec.sasl.password_secret_ref, spec.sasl.oidc
        sasl = ruleset.KafkaSasl(
            mechanism=spec.sasl.mechanism,
            username=spec.sasl.username,
            password=ruleset.SecretFile(secret=password.name, key=password.key) if password else None,
            oidc=ruleset.KafkaOidc(
                token_endpoint=oidc.token_endpoint,
                client_id=oidc.client_id,
                client_secret=ruleset.SecretFile(
                    secret=oidc.client_secret_ref.name, key=oidc.client_secret_ref.key
                ),
                scope=oidc.scope,
                extensions=dict(oidc.extensions),
                ca=ruleset.SecretFile(secret=oidc.ca_secret_ref.name, key=oidc.ca_secret_ref.key)
                if oidc.ca_secret_ref
                else None,
            )
            if oidc
            else None,
            aws_msk_iam_region=spec.sasl.aws_msk_iam.region if spec.sasl.aws_msk_iam else None,
        )
    return ruleset.KafkaSecurity(protocol=spec.protocol, tls=tls, sasl=sasl)


def rate_limits(spec: specs.RateLimitsSpec) -> ruleset.RateLimits:
    """The published limits; a trusted proxy that is not a CIDR is refused here (the CRD only checks
    its shape), so the stack says `Ready=False` with the entry rather than trusting the wrong hops."""
    for entry in spec.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"contentApi.rateLimits.trustedProxies: {entry!r} is not a CIDR (e.g. 10.0.0.0/8)"
            ) from None
    return ruleset.RateLimits(
        per_client=_rate_limit("perClient", spec.per_client),
        per_user=_rate_limit("perUser", spec.per_user),
        trusted_proxies=tuple(spec.trusted_proxies),
    )


def _rate_limit(name: str, spec: specs.RateLimitSpec) -> ruleset.RateLimit:
    where = f"contentApi.rateLimits.{name}.per"
    seconds = _duration(where, spec.per)
    # A counter lives one window: a bound on the window is a bound on what the limiter keeps in Redis.
    if not 1 <= seconds <= 3600:
        raise ValueError(f"{where}: {spec.per} is outside 1s..1h")
    return ruleset.RateLimit(requests=spec.requests, seconds=seconds)


def _duration(where: str, text: str) -> int:
    try:
        return durations.parse_seconds(text)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def choose_stack(stacks: Sequence[specs.Source]) -> tuple[specs.Source | None, list[Problem]]:
    """The namespace's stack (the oldest, if several) and a problem for each extra one."""
    ordered = sorted(stacks, key=lambda source: (source.created, source.name))
    extras = [
        Problem(
            source.kind,
            source.name,
            "OneStackPerNamespace",
            f"namespace {source.namespace} already has PersonalizationStack {ordered[0].name}; "
            "delete this one (one stack serves a namespace)",
        )
        for source in ordered[1:]
    ]
    return (ordered[0] if ordered else None), extras


def compile_stack(source: specs.Source) -> tuple[specs.StackSpec, ruleset.StackConfig] | Problem:
    try:
        spec = specs.StackSpec.model_validate(source.spec)
        return spec, stack_config(source.namespace, source.name, spec)
    except pydantic.ValidationError as error:
        return Problem(source.kind, source.name, "InvalidSpec", describe(error))
    except ValueError as error:
        return Problem(source.kind, source.name, "InvalidSpec", str(error))


# --- variants ----------------------------------------------------------------------------------------


def compile_variant(source: specs.Source) -> ruleset.Variant | Problem:
    def problem(reason: str, message: str) -> Problem:
        return Problem(source.kind, source.name, reason, message)

    try:
        spec = specs.VariantSpec.model_validate(source.spec)
    except pydantic.ValidationError as error:
        return problem("InvalidSpec", describe(error))
    content = spec.content
    body, data = content.body, content.data
    if content.type in ("html", "text") and body is None:
        return problem("InvalidContent", f"{content.type} content needs content.body")
    if content.type in ("json", "image") and data is None:
        return problem("InvalidContent", f"{content.type} content needs content.data")
    if content.type == "image":
        if not isinstance(data, dict) or not isinstance(data.get("src"), str) or not data["src"]:
            return problem("InvalidContent", "image content needs content.data.src (the image URL)")
        for field, image in (("src", True), ("href", False)):
            wrong = sanitize.url_problem(data[field], image=image) if data.get(field) is not None else None
            if wrong is not None:
                return problem("InvalidContent", f"content.data.{field} {wrong}")
    if content.type == "html" and body is not None:
        body = sanitize.clean_html(body)
    start = end = None
    if spec.schedule is not None:
        start = _epoch(spec.schedule.start)
        end = _epoch(spec.schedule.end)
        if start is not None and end is not None and end <= start:
            return problem("InvalidSchedule", "schedule.end must be after schedule.start")
    # Every value was validated by VariantSpec above; constructing skips validating it twice.
    return ruleset.Variant.model_construct(
        name=source.name,
        slot=spec.slot,
        content_type=content.type,
        body=body,
        data=data,
        weight=spec.weight,
        tags=spec.tags,
        labels=dict(source.labels),
        fallback=spec.fallback,
        start=start,
        end=end,
    )


def _epoch(moment: datetime.datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


# --- rules -------------------------------------------------------------------------------------------


def compile_rule(
    source: specs.Source, features: ruleset.FeatureConfig
) -> tuple[specs.RuleSpec, ruleset.Rule] | Problem:
    """The rule on its own: spec, matchers against the stack's features, CEL, caps. Variants are
    resolved later (`resolve_variants`), against the whole namespace."""

    def problem(reason: str, message: str) -> Problem:
        return Problem(source.kind, source.name, reason, message)

    try:
        spec = specs.RuleSpec.model_validate(source.spec)
    except pydantic.ValidationError as error:
        return problem("InvalidSpec", describe(error))
    windows = {window.name for window in features.windows}
    for index, matcher in enumerate(spec.audience):
        where = f"audience[{index}]"
        if matcher.trait is not None or matcher.feature is None:
            refused = trait_matcher_problem(where, matcher, features)
            if refused is not None:
                return problem(*refused)
            continue
        if matcher.window not in windows:
            return problem(
                "WindowNotDeclared",
                f"{where}.window {matcher.window!r} is not one of the stack's features.windows "
                f"({', '.join(sorted(windows))}); use one of them or declare it in the stack",
            )
        if matcher.value is not None and matcher.dimension is None:
            return problem("InvalidSpec", f"{where}: a value needs its dimension")
        if matcher.dimension is not None and matcher.dimension not in features.dimensions:
            return problem(
                "DimensionNotDeclared",
                f"{where}.dimension {matcher.dimension!r} is not one of the stack's features.dimensions "
                f"({', '.join(features.dimensions) or 'none'}); declare it so workers count it",
            )
    if spec.when is not None:
        refused = when_problem(spec.when, features)
        if refused is not None:
            return problem(refused[0], f"when: {refused[1]}")
    audience = tuple(
        ruleset.Matcher(
            feature=m.feature, dimension=m.dimension, value=m.value, window=m.window or "",
            op=m.op, threshold=m.threshold, trait=m.trait,
        )
        for m in spec.audience
    )  # fmt: skip
    cap = None
    if spec.frequency_cap is not None:
        per_user = spec.frequency_cap.per_user
        window_seconds = None
        if per_user is not None:
            try:
                window_seconds = durations.parse_seconds(per_user.window)
            except ValueError as error:
                return problem("InvalidSpec", f"frequencyCap.perUser.window: {error}")
        cap = ruleset.FrequencyCap(
            per_session=spec.frequency_cap.per_session,
            per_user_count=per_user.count if per_user else None,
            per_user_window_seconds=window_seconds,
        )
    if not 0 <= spec.rollout.percentage <= 100:
        return problem("InvalidSpec", "rollout.percentage must be between 0 and 100")
    context = _bandit_context(spec.rotation, windows, features)
    if isinstance(context, tuple):
        return problem(*context)
    rule = ruleset.Rule(
        name=source.name,
        slot=spec.slot,
        priority=spec.priority,
        enabled=spec.enabled,
        audience=audience,
        when=spec.when,
        variants=(),
        strategy=spec.rotation.strategy,
        seed=spec.rotation.seed or source.name,
        context=context,
        frequency_cap=cap,
        rollout_percentage=spec.rollout.percentage,
        generation=source.generation,
    )
    return spec, rule


def _bandit_context(
    rotation: specs.Rotation, windows: set[str], features: ruleset.FeatureConfig
) -> ruleset.BanditContext | tuple[str, str] | None:
    """The compiled `rotation.context`, None without one, or (reason, message)."""
    spec = rotation.context
    if spec is None:
        return None
    if rotation.strategy != "bandit":
        return "InvalidSpec", "rotation.context needs rotation.strategy bandit"
    if not 1 <= spec.max_segments <= MAX_SEGMENTS:
        return "InvalidSpec", f"rotation.context.maxSegments must be between 1 and {MAX_SEGMENTS}"
    if not 0 <= spec.prior_weight <= MAX_PRIOR_WEIGHT:
        return "InvalidSpec", f"rotation.context.priorWeight must be between 0 and {MAX_PRIOR_WEIGHT:g}"
    if (spec.profile is None) == (spec.trait is None):
        return "InvalidSpec", "rotation.context needs exactly one source: profile or trait"
    if spec.trait is not None:
        refused = context_trait_problem(spec.trait, features)
        if refused is not None:
            return refused
        return ruleset.BanditContext(
            trait=spec.trait, max_segments=spec.max_segments, prior_weight=spec.prior_weight
        )
    source = spec.profile
    assert source is not None
    if source.window not in windows:
        return (
            "WindowNotDeclared",
            f"rotation.context.profile.window {source.window!r} is not one of the stack's features.windows "
            f"({', '.join(sorted(windows))}); use one of them or declare it in the stack",
        )
    if source.dimension not in features.dimensions:
        return (
            "DimensionNotDeclared",
            f"rotation.context.profile.dimension {source.dimension!r} is not one of the stack's "
            f"features.dimensions ({', '.join(features.dimensions) or 'none'}); declare it so workers "
            "count it",
        )
    return ruleset.BanditContext(
        profile=ruleset.ProfileSegment(
            feature=source.feature, dimension=source.dimension, window=source.window
        ),
        max_segments=spec.max_segments,
        prior_weight=spec.prior_weight,
    )


def trait_matcher_problem(
    where: str, matcher: specs.MatcherSpec | ruleset.Matcher, features: ruleset.FeatureConfig
) -> tuple[str, str] | None:
    """None if an audience matcher on a trait names a declared trait and compares it the way its type
    can be compared, else (reason, message)."""
    if matcher.trait is None or matcher.feature is not None:
        return "InvalidSpec", f"{where}: a matcher needs either a feature (with its window) or a trait"
    declared = {trait.name: trait for trait in features.traits}
    trait = declared.get(matcher.trait)
    if trait is None:
        return (
            "TraitNotDeclared",
            f"{where}.trait {matcher.trait!r} is not one of the stack's spec.traits "
            f"({', '.join(sorted(declared)) or 'none'}); declare it in the stack",
        )
    if matcher.window or matcher.dimension is not None:
        return "InvalidSpec", f"{where}: a trait matcher takes no window or dimension"
    if trait.type == "number":
        if matcher.value is not None:
            return "InvalidSpec", f"{where}: trait {trait.name!r} is a number: compare it with threshold"
    else:
        if matcher.op not in ("eq", "ne") or matcher.value is None:
            return (
                "InvalidSpec",
                f"{where}: trait {trait.name!r} is a {trait.type}: compare it with op eq or ne and a value",
            )
        if trait.type == "boolean" and matcher.value not in ("true", "false"):
            return "InvalidSpec", f'{where}.value: trait {trait.name!r} is a boolean: use "true" or "false"'
    return None


_TRAIT_REFERENCE = re.compile(r"\btraits\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*[\"']([^\"']*)[\"']\s*\])")


def traits_named(source: str) -> tuple[str, ...]:
    """The traits a `when` names (`traits.churnRisk`, `traits["churnRisk"]`), sorted: what explain
    shows beside its result."""
    return tuple(sorted({a or b for a, b in _TRAIT_REFERENCE.findall(source)}))


def undeclared_traits(source: str, features: ruleset.FeatureConfig) -> list[str]:
    """The traits a `when` names that the stack does not declare: such a rule could never match, so
    it is refused instead."""
    declared = {trait.name for trait in features.traits}
    return [name for name in traits_named(source) if name not in declared]


def context_trait_problem(name: str, features: ruleset.FeatureConfig) -> tuple[str, str] | None:
    """None if a contextual bandit may segment by trait `name`: declared, and a string or boolean (a
    number would make a segment of every value; an audience or CEL rule can bucket it instead)."""
    declared = {trait.name: trait for trait in features.traits}
    trait = declared.get(name)
    if trait is None:
        return (
            "TraitNotDeclared",
            f"rotation.context.trait {name!r} is not one of the stack's spec.traits "
            f"({', '.join(sorted(declared)) or 'none'}); declare it in the stack",
        )
    if trait.type == "number":
        return (
            "InvalidSpec",
            f"rotation.context.trait {name!r} is a number: segment by a string or boolean trait "
            "(each number would be a segment of its own)",
        )
    return None


def when_problem(source: str, features: ruleset.FeatureConfig) -> tuple[str, str] | None:
    """None if `source` compiles against the profile's variables and its worst-case cost fits
    (tailor.core.rules.environment), else (reason, message): `InvalidCel`, `TraitNotDeclared` or
    `CelCostExceeded`."""
    unknown = undeclared_traits(source, features)
    if unknown:
        declared = ", ".join(trait.name for trait in features.traits) or "none"
        return (
            "TraitNotDeclared",
            f"trait {', '.join(unknown)} is not one of the stack's spec.traits ({declared}); declare it",
        )
    try:
        program = compile_when(source, features)
    except cel.CelError as error:
        return "InvalidCel", str(error)
    assert program.estimate is not None  # compiled with the variables' schemas
    over = program.estimate.over(environment.COST_LIMIT)
    return None if over is None else ("CelCostExceeded", over)


def compile_when(
    source: str, features: ruleset.FeatureConfig, variables: Sequence[str] = constants.CEL_VARIABLES
) -> cel.Program:
    """A rule's `when` as a program over the profile's CEL variables, its cost estimated over the
    stack's `features` and its evaluations stopped at the cost limit (tailor.core.rules.environment):
    checked here, run by the engine (tailor.core.decision.engine.load), compiled once per process for
    both. Raises cel.CelError."""
    compiled = _compiled_when(source, tuple(variables), features)
    if isinstance(compiled, cel.CelError):
        raise compiled.with_traceback(None)
    return compiled


@functools.lru_cache(maxsize=4096)
def _compiled_when(
    source: str, variables: tuple[str, ...], features: ruleset.FeatureConfig
) -> cel.Program | cel.CelError:
    """Programs are immutable, so they are shared; errors are kept too, so a bad `when` is not parsed
    again on every recompile of its namespace."""
    try:
        return cel.compile(
            source, variables, schemas=environment.schemas(features), budget=environment.COST_LIMIT
        )
    except cel.CelError as error:
        return error


def resolve_variants(
    source: specs.Source,
    spec: specs.RuleSpec,
    by_slot: Mapping[str, Mapping[str, ruleset.Variant]],
    variants: Mapping[str, ruleset.Variant],
    invalid: Mapping[str, Problem],
    selections: dict[tuple[str, bytes], tuple[str, ...]],
) -> tuple[str, ...] | Problem:
    """The rule's variant names: the named ones (all on the rule's slot), or those of its slot that the
    selector matches, sorted by name. `selections` memoizes selectors within one compile: rules of a
    slot often share one."""

    def problem(reason: str, message: str) -> Problem:
        return Problem(source.kind, source.name, reason, message)

    if spec.variants.names is not None:
        for name in spec.variants.names:
            variant = variants.get(name)
            if variant is None:
                if name in invalid:
                    return problem(
                        "InvalidVariant",
                        f"variant {name!r} is invalid ({invalid[name].message}); fix ContentVariant/{name}",
                    )
                return problem(
                    "UnknownVariant",
                    f"variant {name!r} does not exist in namespace {source.namespace}; "
                    "create the ContentVariant or remove it from variants.names",
                )
            if variant.slot != spec.slot:
                return problem(
                    "VariantSlotMismatch",
                    f"variant {name!r} is for slot {variant.slot!r}, not this rule's slot {spec.slot!r}",
                )
        return tuple(dict.fromkeys(spec.variants.names))
    selector = spec.variants.selector
    assert selector is not None  # the schema requires names or selector
    key = (spec.slot, _spec_key(selector.model_dump()))
    chosen = selections.get(key)
    if chosen is None:
        on_slot = by_slot.get(spec.slot, {})
        chosen = tuple(sorted(name for name, variant in on_slot.items() if selector.matches(variant.labels)))
        selections[key] = chosen
    if not chosen:
        return problem(
            "NoVariantsSelected",
            f"variants.selector matches no ContentVariant of slot {spec.slot!r}; "
            "label some variants of this slot or change the selector",
        )
    return chosen


def rule_fits(
    rule: ruleset.Rule, variants: Mapping[str, ruleset.Variant], features: ruleset.FeatureConfig
) -> str | None:
    """None if a compiled rule is consistent with these variants and features, else why not."""
    for name in rule.variants:
        variant = variants.get(name)
        if variant is None:
            return f"its variant {name!r} is no longer in the ruleset"
        if variant.slot != rule.slot:
            return f"its variant {name!r} is now on slot {variant.slot!r}"
    windows = {window.name for window in features.windows}
    for matcher in rule.audience:
        if matcher.trait is not None:
            refused = trait_matcher_problem("audience", matcher, features)
            if refused is not None:
                return refused[1]
            continue
        if matcher.window not in windows:
            return f"the stack no longer declares window {matcher.window!r}"
        if matcher.dimension is not None and matcher.dimension not in features.dimensions:
            return f"the stack no longer declares dimension {matcher.dimension!r}"
    if rule.context is not None and rule.context.trait is not None:
        refused = context_trait_problem(rule.context.trait, features)
        if refused is not None:
            return f"{refused[1]} (since the stack changed)"
    if rule.context is not None and rule.context.profile is not None:
        source = rule.context.profile
        if source.window not in windows:
            return f"the stack no longer declares window {source.window!r} (rotation.context)"
        if source.dimension not in features.dimensions:
            return f"the stack no longer declares dimension {source.dimension!r} (rotation.context)"
    if rule.when is not None:
        refused = when_problem(rule.when, features)  # the stack's bounds may have grown since
        if refused is not None:
            return f"its `when` does not fit the stack's features ({refused[1]})"
    return None


# --- the namespace -----------------------------------------------------------------------------------


def compile_namespace(
    namespace: str,
    sources: Iterable[specs.Source],
    previous: ruleset.Ruleset | None = None,
    cache: Cache | None = None,
) -> CompileResult:
    """Everything of one namespace, compiled by the last-good policy in this module's docstring."""
    cache = cache if cache is not None else Cache()
    cache.trim()
    stacks: list[specs.Source] = []
    variant_sources: list[specs.Source] = []
    rule_sources: list[specs.Source] = []
    for source in sources:
        {
            constants.STACK_KIND: stacks,
            constants.VARIANT_KIND: variant_sources,
            constants.RULE_KIND: rule_sources,
        }[source.kind].append(source)
    results: dict[tuple[str, str], ResourceResult] = {}

    stack, extras = choose_stack(stacks)
    for problem in extras:
        extra = _find(stacks, problem.name)
        results[(problem.kind, problem.name)] = ResourceResult(extra, "omitted", (problem,))
    if stack is None:
        message = f"namespace {namespace} has no PersonalizationStack"
        held = Problem(constants.STACK_KIND, "", "NoStack", message)
        return _held(namespace, held, variant_sources + rule_sources, results)
    compiled_stack = compile_stack(stack)
    if isinstance(compiled_stack, Problem):
        results[(stack.kind, stack.name)] = ResourceResult(stack, "omitted", (compiled_stack,))
        return _held(namespace, compiled_stack, variant_sources + rule_sources, results)
    config = compiled_stack[1]
    features = config.features
    results[(stack.kind, stack.name)] = ResourceResult(stack, "published")
    previous_variants = previous.variants if previous is not None else {}
    previous_rules = {rule.name: rule for rule in previous.rules} if previous is not None else {}

    # Variants: each on its own.
    variants: dict[str, ruleset.Variant] = {}
    invalid_variants: dict[str, Problem] = {}
    for source in variant_sources:
        key = (source.name, _spec_key(source.spec), _spec_key(source.labels))
        compiled_variant = cache.variants.get(key)
        if compiled_variant is None:
            compiled_variant = cache.variants[key] = compile_variant(source)
        if isinstance(compiled_variant, Problem):
            invalid_variants[source.name] = compiled_variant
            kept_variant = previous_variants.get(source.name)
            if kept_variant is not None:
                variants[source.name] = kept_variant
                results[(source.kind, source.name)] = ResourceResult(source, "kept", (compiled_variant,))
            else:
                results[(source.kind, source.name)] = ResourceResult(source, "omitted", (compiled_variant,))
        else:
            variants[source.name] = compiled_variant
            results[(source.kind, source.name)] = ResourceResult(source, "published")
    by_slot: dict[str, dict[str, ruleset.Variant]] = defaultdict(dict)
    for variant in variants.values():
        by_slot[variant.slot][variant.name] = variant

    # Rules: on their own, then their variants.
    fresh: dict[str, ruleset.Rule] = {}
    failed: dict[str, Problem] = {}
    by_name = {source.name: source for source in rule_sources}
    selections: dict[tuple[str, bytes], tuple[str, ...]] = {}
    features_key = _features_key(features)
    for source in rule_sources:
        rule_key = (source.name, source.generation, _spec_key(source.spec), features_key)
        compiled_rule = cache.rules.get(rule_key)
        if compiled_rule is None:
            compiled_rule = cache.rules[rule_key] = compile_rule(source, features)
        if isinstance(compiled_rule, Problem):
            failed[source.name] = compiled_rule
            continue
        spec, rule = compiled_rule
        resolved = resolve_variants(source, spec, by_slot, variants, invalid_variants, selections)
        if isinstance(resolved, Problem):
            failed[source.name] = resolved
        else:
            fresh[source.name] = rule.model_copy(update={"variants": resolved})

    # Priority conflicts among the fresh rules and the kept forms of the failed ones, until stable.
    while True:
        candidates = dict(fresh)
        for name in failed:
            if name in previous_rules:
                candidates[name] = previous_rules[name]
        loser = _priority_loser(candidates, fresh.keys(), previous_rules, by_name)
        if loser is None:
            break
        name, winner = loser
        rule = candidates[name]
        del fresh[name]
        failed[name] = Problem(
            constants.RULE_KIND,
            name,
            "PriorityConflict",
            f"rule {winner!r} already has priority {rule.priority} on slot {rule.slot!r}; "
            "give one of them another priority",
        )

    held_by: Problem | None = None
    for name, problem in failed.items():
        source = by_name[name]
        kept_rule = previous_rules.get(name)
        if kept_rule is None:
            results[(source.kind, name)] = ResourceResult(source, "omitted", (problem,))
            continue
        misfit = rule_fits(kept_rule, variants, features)
        if misfit is not None and held_by is None:
            held_by = Problem(
                source.kind,
                name,
                problem.reason,
                f"{problem.message}; its last published form cannot stay either ({misfit}), "
                "so nothing is published until it is fixed",
            )
        candidates[name] = kept_rule
        results[(source.kind, name)] = ResourceResult(source, "kept", (problem,))
    for name in fresh:
        results[(constants.RULE_KIND, name)] = ResourceResult(by_name[name], "published")
    if held_by is not None:
        return _held(namespace, held_by, [], results)

    rules = sorted(candidates.values(), key=lambda rule: (rule.slot, -rule.priority, rule.name))
    compiled = ruleset.Ruleset(
        stack=f"{namespace}/{stack.name}",
        config=config,
        variants=dict(sorted(variants.items())),
        rules=tuple(rules),
    )
    return CompileResult(namespace, compiled, None, results)


def _priority_loser(
    candidates: Mapping[str, ruleset.Rule],
    fresh: Collection[str],
    previous_rules: Mapping[str, ruleset.Rule],
    sources: Mapping[str, specs.Source],
) -> tuple[str, str] | None:
    """(loser, winner) of the first slot/priority tie, or None. The loser is always a fresh rule."""
    places: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name, rule in candidates.items():
        places[(rule.slot, rule.priority)].append(name)
    for (slot, priority), names in sorted(places.items()):
        if len(names) < 2:
            continue

        def rank(name: str, place: tuple[str, int] = (slot, priority)) -> tuple[bool, str, str]:
            before = previous_rules.get(name)
            held_place = before is not None and (before.slot, before.priority) == place
            return (not held_place, sources[name].created, name)

        ordered = sorted(names, key=rank)
        # Kept forms held their place in `previous`, so they rank first; a loser is always fresh.
        losers = [name for name in reversed(ordered) if name in fresh]
        if losers:
            return losers[0], ordered[0]
    return None


def _held(
    namespace: str,
    held: Problem,
    others: Iterable[specs.Source],
    results: dict[tuple[str, str], ResourceResult],
) -> CompileResult:
    for source in others:
        results.setdefault((source.kind, source.name), ResourceResult(source, "omitted"))
    return CompileResult(namespace, None, held, results)


def _find(sources: Sequence[specs.Source], name: str) -> specs.Source:
    return next(source for source in sources if source.name == name)


def _spec_key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _features_key(features: ruleset.FeatureConfig) -> bytes:
    # Everything a rule's check reads: matchers name windows and dimensions, a `when` is costed over
    # them and over the recent limit.
    return orjson.dumps(
        [
            [window.name for window in features.windows],
            list(features.dimensions),
            features.recent_limit,
            [trait.model_dump(mode="json") for trait in features.traits],
        ]
    )


def describe(error: pydantic.ValidationError) -> str:
    """A pydantic error as `spec.field.path: what is wrong` lines joined by '; '."""
    parts = []
    for item in error.errors():
        path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        parts.append(f"{path}: {item['msg']}")
    return "; ".join(parts)


def sources_from_manifests(manifests: Iterable[Mapping[str, Any]], namespace: str) -> list[specs.Source]:
    """The Tailor resources among `manifests` that belong to `namespace` (unset namespace = it)."""
    found = []
    for manifest in manifests:
        if specs.is_tailor_manifest(manifest):
            source = specs.Source.from_manifest(manifest, namespace)
            if source.namespace == namespace:
                found.append(source)
    return found


def summary(result: CompileResult) -> dict[str, int]:
    counts = {"published": 0, "kept": 0, "omitted": 0}
    for item in result.resources.values():
        counts[item.outcome] += 1
    return counts
