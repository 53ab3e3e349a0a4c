"""Rules, variants and stacks, from the custom resources to the published ruleset.

`specs` reads the three custom resources' specs and `crdschema` checks manifests against the CRDs;
`compiler` turns a namespace of them into a `ruleset.Ruleset` (the contract every component reads;
`sanitize` cleans variant HTML on the way); `versions` publishes, follows and rolls back a stack's
ruleset in Redis. `rulediff`, `ruleeffects` and `describe` say in words what a ruleset does and what
a change to it changes (`tailor diff`, `tailor simulate`). Independent of the data path: nothing here
imports events, profiles or decisions.
"""
