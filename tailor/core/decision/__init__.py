"""The decision engine: what a user sees in a slot, shared by the content API (GET /v1/decide,
/v1/explain) and `tailor simulate`.

`engine` loads a published ruleset into an immutable `Engine` (rules per slot, each `when` a Python
function, content serialized once: the data plane's stage; the control plane's compile is
tailor.core.rules.compiler); `decide` is the decision for one slot, a pure function of the engine,
the user's `UserContext` and the time; `rotation` and `hashing` choose among variants and roll rules
out reproducibly; `caps` is everything about frequency caps, with `caps.lua`, the atomic
check-and-count; `keys` is where the per-user decision state lives in Redis. The content API keeps
the HTTP and the Redis round trips (tailor_api.decide_endpoint, tailor_api.user_context).
"""
