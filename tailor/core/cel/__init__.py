"""CEL for Tailor: a rule's `when` and the CRDs' `x-kubernetes-validations`, compiled once into a
Python function over plain values.

`program` parses (with celpy's parser) and compiles; `translate` turns the parse tree into Python
source; `runtime` holds the operations whose CEL typing differs from Python's, which that source
calls. Independent of the rest of Tailor: nothing here imports another Tailor package.

    from tailor.core import cel
    program = cel.compile('views["30m"].total >= 3', variables)
"""

from tailor.core.cel.program import (
    CelError,
    CostLimitExceeded,
    Duration,
    Estimate,
    EvaluationError,
    Program,
    compile,
    kubernetes_value,
    validation_rule,
)

__all__ = [
    "CelError",
    "CostLimitExceeded",
    "Duration",
    "Estimate",
    "EvaluationError",
    "Program",
    "compile",
    "kubernetes_value",
    "validation_rule",
]
