"""The expression language that rule conditions and feature specs are written in.

It sits below both: a feature spec's filters and values and a rule's condition compile to the same
closures over a batch's columns (:func:`compile_expr`, :func:`compile_value`), and fail with the
same :class:`ExprError`.
"""

from fraudstream.expr.errors import ExprError, UnknownNameError
from fraudstream.expr.expression import ANY, NUMBER, STRING, CompiledExpr, compile_expr, compile_value

__all__ = [
    "ANY",
    "NUMBER",
    "STRING",
    "CompiledExpr",
    "ExprError",
    "UnknownNameError",
    "compile_expr",
    "compile_value",
]
