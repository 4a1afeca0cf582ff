"""The words of the condition language: the kinds of values, its functions and its operators.

The whitelist is these tables, kept apart from :mod:`.compiler` so that what the language accepts, and
what an error message calls a construct it rejects, can be read and changed in one place.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any, Final

NUMBER: Final = "number"
STRING: Final = "string"
ANY: Final = "any"
BOOL: Final = "bool"
NONE: Final = "none"

FUNCTIONS: Final = ("abs", "is_missing", "log1p", "max", "min")

COMPARE: Final[dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]]] = {
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}
ARITH: Final[dict[type[ast.operator], str]] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_OPERATOR_NAMES: Final[dict[type[ast.AST], str]] = {
    ast.Pow: "**",
    ast.Mod: "%",
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.BitAnd: "& (use 'and')",
    ast.BitOr: "| (use 'or')",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Invert: "~ (use 'not')",
    ast.Is: "is (use == or is_missing(x))",
    ast.IsNot: "is not (use != or is_missing(x))",
}
CONSTRUCTS: Final[dict[type[ast.AST], str]] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Slice: "slice",
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.NamedExpr: "assignment expression (:=)",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.IfExp: "conditional expression (a if c else b)",
    ast.Dict: "dict literal",
    ast.Set: "set literal",
    ast.List: "list literal outside 'in'",
    ast.Tuple: "tuple outside 'in'",
    ast.Starred: "starred argument",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def op_name(op: ast.AST) -> str:
    """How an error message names a rejected operator, with what to write instead where there is one."""
    return _OPERATOR_NAMES.get(type(op), type(op).__name__)
