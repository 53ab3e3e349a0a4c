"""POST /v1/graphql: decide, feedback and events through GraphQL, on the REST routes' own functions.

The schema (SDL below) is bound to resolvers with ariadne (pyproject.toml says why ariadne) and run
by graphql-core's own execute; this router serves it like any other route. Every resolver calls the
function its REST route calls (`decide_endpoint.decisions`, `feedback.check` and `give`, the
collector's `accept` behind `Runtime.events_gate`), so validation, identity (the Authorization
token), frequency caps, rate limits and errors are REST's: a refusal is REST's problem document,
carried in the GraphQL error's `extensions` (`status`, `type`, `title`, `detail`, `parameter`...),
with its Retry-After or WWW-Authenticate header on the HTTP response.

What GraphQL adds, refused before anything runs (`{"errors": [...]}` and no data, with 200 as the
GraphQL-over-HTTP spec asks of JSON replies to a well-formed request; a body that is no GraphQL
request at all gets 400): documents of more than MAX_TOKENS tokens, selections deeper than
MAX_DEPTH, operations that cost more than MAX_COST (each slot of a decide, each feedback and each
events field costs one: the REST decide's 16 slots, whatever the aliases), and, unless
`tailor api --graphql-introspection` (TAILOR_GRAPHQL_INTROSPECTION), the introspection fields
`__schema` and `__type`. Parsed and validated documents are kept (a page sends the same few
queries), and a query of one `decide` field is served by a plan compiled once per document
(tailor_api.graphql_plan) instead of graphql-core's execute, which serves everything else
(docs/content-api.md#graphql).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from types import CoroutineType
from typing import Any, Final, TypeGuard

import orjson
from ariadne import InterfaceType, MutationType, ObjectType, QueryType, ScalarType, make_executable_schema
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    InlineFragmentNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    execute,
    parse,
    specified_rules,
    validate,
    value_from_ast_untyped,
)
from graphql.validation import NoSchemaIntrospectionCustomRule

from tailor.core import logthrottle
from tailor_api import decide_endpoint, feedback, graphql_plan, web
from tailor_api.runtime import Runtime

ROUTE: Final = "/v1/graphql"  # the `route` label of its metrics and rate limits
# Our types nest three fields deep (decide > content > src); introspection (`__schema`, `__type`) is
# left to its switch and to graphql-core's own introspection depth rule, so tools' queries still pass.
MAX_DEPTH: Final = 5
MAX_COST: Final = 16  # decide slots + feedback + events fields per operation: REST decide's slot limit
MAX_TOKENS: Final = 2000  # parsing is refused past this: a document's parse cost is bounded before it runs
DOCUMENTS_KEPT: Final = 256  # parsed and validated documents kept per process

SCHEMA: Final = '''
"Personalized decisions, feedback and behaviour events: the REST routes' functions (docs/content-api.md)."
type Query {
  """
  One decision per slot, as GET /v1/decide: `user` and `session` may be left out when the request
  carries an identity token (Authorization: Bearer), whose `sub` and `sid` they must match otherwise.
  """
  decide(slots: [String!]!, user: String, session: String): [Decision!]!
}

type Mutation {
  "Feedback on a decision, as POST /v1/feedback: `type` is click, dismiss, notInterested or conversion."
  feedback(decisionId: String!, type: String!): FeedbackResult!
  "Behaviour events, as POST /v1/events: each event is the collector's JSON event (docs/pipeline.md)."
  events(events: [JSON!]!): EventsResult!
}

"Any JSON value."
scalar JSON

type Decision {
  slot: String!
  "The variant served; null when the slot fell back (then `content` is the fallback's, if any)."
  variant: String
  "The rule that chose it; null for a fallback."
  rule: String
  content: Content
  "Signed; send it back with feedback."
  decisionId: String!
  rulesetVersion: Int!
}

"A variant's content, typed by its kind (the ContentVariant's content.type)."
interface Content {
  type: ContentType!
}

enum ContentType {
  html
  text
  json
  image
}

"Sanitized HTML."
type HtmlContent implements Content {
  type: ContentType!
  body: String!
}

type TextContent implements Content {
  type: ContentType!
  body: String!
}

type JsonContent implements Content {
  type: ContentType!
  data: JSON!
}

type ImageContent implements Content {
  type: ContentType!
  src: String!
  alt: String
  href: String
  "The whole payload, src, alt and href included."
  data: JSON!
}

type FeedbackResult {
  "accepted, or duplicate: this session already gave this feedback on this rule."
  status: String!
}

type EventsResult {
  "How many events Kafka acknowledged."
  accepted: Int!
  "Invalid events by index, with their errors; the others were accepted."
  rejected: [JSON!]!
  "Accepted events that no window can count any more (too late), by index."
  notCounted: [JSON!]!
}
'''

_INTROSPECTION: Final = frozenset({"__schema", "__type"})


class Problem(Exception):
    """A REST problem reply raised from a resolver: its document becomes the error's extensions."""

    def __init__(self, reply: web.Reply) -> None:
        self.document: dict[str, Any] = orjson.loads(reply.body)
        super().__init__(self.document.get("detail", self.document.get("title", "refused")))
        self.extensions = self.document
        self.headers = reply.headers


@dataclass
class Context:
    runtime: Runtime
    scope: web.Scope
    headers: web.Headers = field(default_factory=list)  # from problems: Retry-After, WWW-Authenticate
    # decide's outcome when a plan made the decision but could not serve it (graphql_plan): the
    # resolver returns it (or its refusal) rather than deciding twice.
    settled: list[dict[str, Any]] | web.Reply | None = None

    def refuse(self, reply: web.Reply) -> Problem:
        problem = Problem(reply)
        named = {name for name, _ in self.headers}
        self.headers += [(name, value) for name, value in problem.headers if name not in named]
        return problem


# --- resolvers ------------------------------------------------------------------------------------

query = QueryType()
mutation = MutationType()
content = InterfaceType("Content")
image = ObjectType("ImageContent")
decision = ObjectType("Decision")
json_scalar = ScalarType("JSON")


@json_scalar.literal_parser
def _json_literal(node: Any, variables: dict[str, Any] | None = None) -> Any:
    return value_from_ast_untyped(node, variables)


@query.field("decide")
async def _decide(
    _: None,
    info: GraphQLResolveInfo[Context],
    slots: list[str],
    user: str | None = None,
    session: str | None = None,
) -> list[dict[str, Any]]:
    context: Context = info.context
    if context.settled is not None:
        if isinstance(context.settled, web.Reply):
            raise context.refuse(context.settled)
        return context.settled
    made = await decide_endpoint.decisions(context.runtime, context.scope, user, session, slots, ROUTE)
    if isinstance(made, web.Reply):
        raise context.refuse(made)
    return decide_endpoint.listed(*made)


@decision.field("content")
def _content(made: Mapping[str, Any], _: GraphQLResolveInfo[Context]) -> Any:
    serialized = made["content"]  # serialized once per ruleset version (an orjson.Fragment)
    return None if serialized is None else orjson.loads(orjson.dumps(serialized))


@content.type_resolver
def _content_type(value: Mapping[str, Any], *_: Any) -> str:
    return graphql_plan.CONTENT_TYPES[value["type"]]


def _image_field(name: str) -> Any:
    def resolve(value: Mapping[str, Any], _: GraphQLResolveInfo[Context]) -> Any:
        found = value["data"].get(name)
        return found if isinstance(found, str) else None

    return resolve


for _name in ("src", "alt", "href"):
    image.set_field(_name, _image_field(_name))


@mutation.field("feedback")
async def _feedback(_: None, info: GraphQLResolveInfo[Context], decisionId: str, type: str) -> dict[str, str]:
    context: Context = info.context
    checked = feedback.check({"decisionId": decisionId, "type": type})
    if isinstance(checked, web.Reply):
        raise context.refuse(checked)
    outcome = await feedback.give(context.runtime, context.scope, *checked, route=ROUTE)
    if isinstance(outcome, web.Reply):
        raise context.refuse(outcome)
    return {"status": outcome}


@mutation.field("events")
async def _events(_: None, info: GraphQLResolveInfo[Context], events: list[Any]) -> dict[str, Any]:
    context: Context = info.context
    gate = context.runtime.events_gate(context.scope)
    if isinstance(gate, web.Reply):
        raise context.refuse(gate)
    collector, who = gate
    outcome = await collector.accept({"events": events}, who)
    if isinstance(outcome, web.Reply):
        raise context.refuse(outcome)
    return outcome


# --- limits ---------------------------------------------------------------------------------------


class DepthLimit(ASTValidationRule):
    """Refuses selections nested deeper than MAX_DEPTH, fragments followed; introspection fields are not
    counted (see MAX_DEPTH)."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {
            definition.name.value: definition
            for definition in self.context.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        if _depth(node.selection_set, fragments, {}) > MAX_DEPTH:
            name = f"operation {node.name.value!r}" if node.name else "the operation"
            self.report_error(
                GraphQLError(
                    f"{name} nests fields more than {MAX_DEPTH} deep; at most {MAX_DEPTH} are allowed",
                    node,
                    extensions={"code": "too-deep", "limit": MAX_DEPTH},
                )
            )


def _depth(
    selections: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode],
    known: dict[str, int], visiting: frozenset[str] = frozenset(),
) -> int:  # fmt: skip
    """How many fields deep `selections` go, counted no further than MAX_DEPTH + 1 (the recursion stays
    short whatever the document), each fragment's depth worked out once (`known`): a chain of fragments
    that each spread the next twice must not cost 2^n."""
    if selections is None:
        return 0
    deepest = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value not in _INTROSPECTION and selection.selection_set is not None:
                below = (
                    _depth(selection.selection_set, fragments, known, visiting) if deepest <= MAX_DEPTH else 0
                )
                deepest = max(deepest, 1 + below)
            elif selection.name.value not in _INTROSPECTION:
                deepest = max(deepest, 1)
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, known, visiting))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name not in known:
                found = fragments.get(name)
                if found is None or name in visiting:  # unknown or cyclic: the spec rules refuse it
                    continue
                known[name] = _depth(found.selection_set, fragments, known, visiting | {name})
            deepest = max(deepest, known[name])
        if deepest > MAX_DEPTH:
            break
    return min(deepest, MAX_DEPTH + 1)


def cost(document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]) -> int:
    """What the operation to run costs: one per slot of each decide, one per feedback or events field
    (aliases repeat a field; fragments are followed). Needs the variables: slots may be one."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)]
    if not chosen:
        return 0  # execution says that no such operation exists
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return sum(
        _field_cost(node, variables) for node in _root_fields(chosen[0].selection_set, fragments, set())
    )


def _root_fields(
    selections: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode], seen: set[str]
) -> Iterable[FieldNode]:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            found = fragments.get(selection.name.value)
            if found is not None:
                yield from _root_fields(found.selection_set, fragments, seen)


def _field_cost(node: FieldNode, variables: Mapping[str, Any]) -> int:
    name = node.name.value
    if name in ("feedback", "events"):
        return 1
    if name != "decide":
        return 0
    for argument in node.arguments or ():
        if argument.name.value != "slots":
            continue
        value = argument.value
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            return len(given) if isinstance(given, list) else 1
        if isinstance(value, ListValueNode):
            return sum(
                len(variables[item.name.value])
                if isinstance(item, VariableNode) and isinstance(variables.get(item.name.value), list)
                else 1
                for item in value.values
            )
        return 1
    return 1


# --- the route ------------------------------------------------------------------------------------


log = logging.getLogger(__name__)
log.addFilter(logthrottle.RepeatThrottle())  # a bug that fails every request: one line per cause per 10 s


def _unexpected(error: GraphQLError) -> Exception | None:
    """What a resolver raised that no one meant (a bug), if so; REST's refusals and GraphQL's own
    errors are the client's business and stay out of the log."""
    original = error.original_error
    return original if original is not None and not isinstance(original, (Problem, GraphQLError)) else None


def _format_error(error: GraphQLError) -> dict[str, Any]:
    if _unexpected(error) is not None:
        # As REST's 500: what failed is in the log, not in the reply (it may name internal addresses).
        internal = web.problem(500, "internal", "Internal error", "the server failed; it has been logged")
        formatted = GraphQLError(
            "internal error; it has been logged", error.nodes, path=error.path,
            extensions=orjson.loads(internal.body),
        ).formatted  # fmt: skip
        return dict(formatted)
    return dict(error.formatted)


@dataclass(frozen=True, slots=True)
class Checked:
    document: DocumentNode | None
    errors: Sequence[GraphQLError]
    plans: dict[str | None, graphql_plan.Plan | None] = field(default_factory=dict)  # by operation name

    def plan(self, operation_name: str | None) -> graphql_plan.Plan | None:
        """The operation's plan (graphql_plan), compiled on first use; None when graphql-core runs it."""
        if operation_name in self.plans:
            return self.plans[operation_name]
        found = None if self.document is None else graphql_plan.compile_plan(self.document, operation_name)
        if len(self.plans) < 4:  # a document names a few operations; more are not worth keeping
            self.plans[operation_name] = found
        return found


class Endpoint:
    """The route's handler: `(runtime, scope, receive) -> web.Reply`, like every route of tailor_api.app."""

    def __init__(self, *, introspection: bool = False) -> None:
        self.introspection = introspection
        self.schema = make_executable_schema(SCHEMA, query, mutation, content, image, decision, json_scalar)
        rules = [*specified_rules, DepthLimit]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        self.documents: dict[str, Checked] = {}
        self.contents = graphql_plan.Contents()

    def checked(self, source: str) -> Checked:
        """The document parsed and validated, from the cache when this text was seen before."""
        found = self.documents.get(source)
        if found is not None:
            return found
        try:
            document = parse(source, no_location=False, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            found = Checked(None, [error])
        else:
            found = Checked(document, validate(self.schema, document, self.rules))
        while len(self.documents) >= DOCUMENTS_KEPT:
            del self.documents[next(iter(self.documents))]  # the oldest
        self.documents[source] = found
        return found

    async def __call__(self, runtime: Runtime, scope: web.Scope, receive: web.Receive) -> web.Reply:
        served = runtime.engine
        if served is None:
            return web.not_ready()
        kind = (web.header(scope, b"content-type") or b"").partition(b";")[0].strip().lower()
        if kind != web.JSON:
            # A form or text/plain POST needs no CORS preflight: a JSON body only is what keeps another
            # site's page from sending mutations with a shopper's browser.
            detail = "send the GraphQL request as JSON: Content-Type: application/json"
            return web.problem(415, "unsupported-media-type", "Unsupported media type", detail)
        try:
            body = await web.read_body(
                scope, receive, max(served.config.api.max_body_bytes, feedback.MAX_BODY_BYTES)
            )
        except web.BodyRefused as error:
            return error.reply()
        try:
            request: Any = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return _request_error(f"the body is not JSON: {error}")
        if not isinstance(request, dict) or not isinstance(request.get("query"), str):
            return _request_error('send {"query": "...", "variables": {...}, "operationName": "..."}')
        variables = request.get("variables")
        variables = {} if variables is None else variables
        operation_name = request.get("operationName")
        if not isinstance(variables, dict) or not (operation_name is None or isinstance(operation_name, str)):
            return _request_error("`variables` must be an object and `operationName` a string")
        checked = self.checked(request["query"])
        if checked.errors or checked.document is None:
            return web.json_reply(200, {"errors": [_format_error(error) for error in checked.errors]})
        plan = checked.plan(operation_name)
        # A plan's operation is its one decide field: the same cost, without walking the document.
        spent = (
            cost(checked.document, operation_name, variables)
            if plan is None
            else _field_cost(plan.node, variables)
        )
        if spent > MAX_COST:
            detail = (
                f"the operation costs {spent}: one per slot of each decide and one per feedback or events "
                f"field; at most {MAX_COST} per request (send several requests)"
            )
            return web.json_reply(200, {"errors": [{"message": detail, "extensions": {
                "code": "too-costly", "cost": spent, "limit": MAX_COST}}]})  # fmt: skip
        context = Context(runtime, scope)
        arguments = None if plan is None else plan.arguments(variables)
        if plan is not None and arguments is not None:
            slots, user, session = arguments
            made = await decide_endpoint.decisions(runtime, scope, user, session, slots, ROUTE)
            if isinstance(made, web.Reply):
                context.settled = made
            else:
                listed = decide_endpoint.listed(*made)
                data = plan.project(listed, self.contents)
                if data is not None:
                    return web.Reply(200, orjson.dumps({"data": data}), web.JSON)
                context.settled = listed
        # graphql-core's own execute: ariadne's graphql() would parse and validate again, or call our
        # cache for both, and format and log each error its way, ~60 us a request that this route cannot
        # spare (docs/content-api.md#graphql: bench/graphql.py).
        result = execute(self.schema, checked.document, context_value=context, variable_values=variables,
                         operation_name=operation_name, is_awaitable=_is_coroutine)  # fmt: skip
        if isawaitable(result):
            result = await result
        reply: dict[str, Any] = {"data": result.data}
        if result.errors:
            for failed in result.errors:
                bug = _unexpected(failed)
                if bug is not None:
                    log.error("GraphQL field %s failed", failed.path, exc_info=bug)
            reply["errors"] = [_format_error(failed) for failed in result.errors]
        return web.Reply(200, orjson.dumps(reply), web.JSON, context.headers)


def _is_coroutine(value: object) -> TypeGuard[Awaitable[Any]]:
    """graphql-core asks this of every value a field gives; its default also looks for futures and
    `__await__`, but our resolvers give plain values or coroutines (async def), and one type check is
    ~30 us cheaper per decision (of ~170, measured in-process)."""
    return type(value) is CoroutineType


def _request_error(message: str) -> web.Reply:
    return web.json_reply(400, {"errors": [{"message": message, "extensions": {"code": "bad-request"}}]})
