"""Turns a whitelisted Python expression tree into closures over numpy columns (see :mod:`.expr`)."""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from fraudstream.expr._lang import ARITH, BOOL, COMPARE, CONSTRUCTS, FUNCTIONS, NONE, NUMBER, STRING, op_name
from fraudstream.expr.columns import (
    ARITHMETIC,
    F64,
    Columns,
    as_array,
    as_condition,
    as_number,
    compare_values,
    isin_text,
    missing,
    quiet,
    settled,
)
from fraudstream.expr.errors import ExprError, UnknownNameError, suggest

MAX_DEPTH: Final = 32
EXTRA: Final = "extra"
"""``extra.<field>`` names a field of a transaction's ``extra``, where the caller declares it known."""

Fn = Callable[["Columns"], Any]
Test = Callable[[np.ndarray, np.ndarray], np.ndarray]
_NO_COLUMNS: Final = Columns({}, 0)


class Compiler:
    """Checks one parsed condition node by node and builds its closure; ``names`` collects what it reads.

    The closures are built for batches of one row as much as for large ones: operands that read no
    column are computed once here, and comparisons of two float arrays skip the missing-value masks.
    """

    def __init__(self, source: str, kinds: dict[str, str]) -> None:
        self.source = source
        self.kinds = kinds
        self.names: set[str] = set()
        self.reads = 0

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or type(node).__name__

    def reject(self, node: ast.AST, what: str) -> ExprError:
        return ExprError(f"{what} is not allowed in conditions: {self.segment(node)!r}")

    def condition(self, node: ast.expr, depth: int) -> Fn:
        fn, kind = self.compile(node, depth)
        what = self.segment(node)
        if kind == STRING:
            raise ExprError(f"{what!r} is text, not a condition")
        if kind == NONE:
            raise ExprError("None is not a condition; use is_missing(x)")
        if kind == NUMBER and not isinstance(node, ast.Name):
            raise ExprError(f"{what!r} is a value, not a condition; compare it, e.g. '{what} > 0'")
        if kind == BOOL:
            return fn
        return lambda cols: as_condition(as_array(fn(cols)), what)

    def number(self, node: ast.expr, depth: int) -> Fn:
        fn, kind = self.compile(node, depth)
        what = self.segment(node)
        if kind in (STRING, NONE):
            raise ExprError(f"{what!r} is not a number")
        return lambda cols: as_number(as_array(fn(cols)), what)

    def compile(self, node: ast.expr, depth: int) -> tuple[Fn, str]:
        if depth > MAX_DEPTH:
            raise ExprError(f"condition is nested more than {MAX_DEPTH} levels deep")
        d = depth + 1
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == EXTRA
            and f"{EXTRA}.{node.attr}" in self.kinds
        ):
            return self.named(f"{EXTRA}.{node.attr}")
        if isinstance(node, ast.BoolOp):
            return self.bool_op(node, d), BOOL
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                inner = self.condition(node.operand, d)
                return (lambda cols: ~inner(cols)), BOOL
            if isinstance(node.op, ast.USub | ast.UAdd):
                value = self.number(node.operand, d)
                sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
                return (lambda cols: sign * value(cols)), NUMBER
            raise self.reject(node, f"operator {op_name(node.op)}")
        if isinstance(node, ast.BinOp):
            symbol = ARITH.get(type(node.op))
            if symbol is None:
                raise self.reject(node, f"operator {op_name(node.op)}")
            left, right = self.number(node.left, d), self.number(node.right, d)
            arith = ARITHMETIC[symbol]
            return (lambda cols: arith(left(cols), right(cols))), NUMBER
        if isinstance(node, ast.Compare):
            return self.compare(node, d), BOOL
        if isinstance(node, ast.Call):
            return self.call(node, d)
        construct = CONSTRUCTS.get(type(node), type(node).__name__)
        raise self.reject(node, construct)

    def bool_op(self, node: ast.BoolOp, depth: int) -> Fn:
        """``and`` / ``or`` of conditions, left to right, stopping once every row is decided: at all
        False for ``and``, all True for ``or``. Most rules start with a test that holds on few rows, and
        an API batch is one row, so the rest of a rule is seldom evaluated."""
        first, *rest = [self.condition(v, depth) for v in node.values]
        conjunction = isinstance(node.op, ast.And)
        combine = np.logical_and if conjunction else np.logical_or

        def run(cols: Columns) -> np.ndarray:
            result = first(cols)
            for part in rest:
                if settled(result, not conjunction):
                    break
                result = combine(result, part(cols))
            return result

        return run

    def constant(self, node: ast.Constant) -> tuple[Fn, str]:
        value = node.value
        if value is None:
            return (lambda cols: None), NONE
        if isinstance(value, bool):
            flag = np.asarray(value)
            return (lambda cols: flag), BOOL
        if isinstance(value, int | float):
            number = self.number_of(node, value)
            return (lambda cols: number), NUMBER
        if isinstance(value, str):
            return (lambda cols: value), STRING
        raise self.reject(node, f"{type(value).__name__} constant")

    def name(self, node: ast.Name) -> tuple[Fn, str]:
        name = node.id
        if name not in self.kinds:
            hint = " (functions must be called, e.g. abs(x))" if name in FUNCTIONS else ""
            raise UnknownNameError(f"unknown name {name!r}{hint or suggest(name, self.kinds)}", name=name)
        return self.named(name)

    def named(self, name: str) -> tuple[Fn, str]:
        """A column the condition reads: a plain name, or ``extra.<field>`` (a transaction's own field)."""
        self.names.add(name)
        self.reads += 1
        return (lambda cols: cols[name]), self.kinds[name]

    def operand(self, node: ast.expr, depth: int) -> tuple[Fn, str]:
        """Like :meth:`compile`, but the closure returns an array (as :func:`as_array` makes it).

        A column comes from :class:`Columns` already as an array; an operand that reads no column
        (``5``, ``-2.5``, ``'US'``, ``None``) is computed now rather than for every batch.
        """
        reads = self.reads
        fn, kind = self.compile(node, depth)
        if isinstance(node, ast.Name):
            return fn, kind
        if self.reads == reads:
            try:
                with np.errstate(all="ignore"):
                    value = as_array(fn(_NO_COLUMNS))
            except Exception:  # it fails again, with its message, when evaluated
                pass
            else:
                value.flags.writeable = False
                return (lambda cols: value), kind
        return (lambda cols: as_array(fn(cols))), kind

    def compare(self, node: ast.Compare, depth: int) -> Fn:
        if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            if len(node.ops) > 1:
                raise self.reject(node, "chained 'in' comparison")
            return self.membership(node, depth)
        operands = [node.left, *node.comparators]
        compiled = [self.operand(o, depth) for o in operands]
        tests: list[Test] = []
        for i, op in enumerate(node.ops):
            if type(op) not in COMPARE:
                raise self.reject(node, f"operator {op_name(op)}")
            symbol, fn = COMPARE[type(op)]
            (_, left_kind), (_, right_kind) = compiled[i], compiled[i + 1]
            tests.append(self.pair(node, symbol, fn, left_kind, right_kind))
        fns = [fn for fn, _ in compiled]
        if len(tests) == 1:
            (first, second), (test,) = fns, tests
            return lambda cols: test(first(cols), second(cols))

        def run(cols: Columns) -> np.ndarray:
            values = [f(cols) for f in fns]
            results = [t(a, b) for t, a, b in zip(tests, values, values[1:], strict=False)]
            return functools.reduce(np.logical_and, results)

        return run

    def pair(
        self, node: ast.Compare, symbol: str, fn: Callable[[Any, Any], Any], left: str, right: str
    ) -> Test:
        what = self.segment(node)
        if NONE in (left, right):
            if symbol not in ("==", "!=") or left == right:
                raise ExprError(f"{what!r}: None can only be tested with == or !=; use is_missing(x)")
            if left == NONE:
                if symbol == "==":
                    return lambda a, b: missing(b)
                return lambda a, b: ~missing(b)
            if symbol == "==":
                return lambda a, b: missing(a)
            return lambda a, b: ~missing(a)
        kinds = {left, right}
        if STRING in kinds and kinds & {NUMBER, BOOL}:
            raise ExprError(f"{what!r} compares text with a number")
        if STRING in kinds and symbol not in ("==", "!="):
            raise ExprError(f"{what!r}: text can only be compared with == and !=")

        def test(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            try:
                return compare_values(symbol, fn, a, b)
            except ExprError as exc:
                raise ExprError(f"{what!r}: {exc.problem}") from None

        if symbol == "!=":
            return test

        def fast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            if a.dtype is F64 and b.dtype is F64:
                return fn(a, b)  # as compare_values does, without its call
            return test(a, b)

        return fast

    def membership(self, node: ast.Compare, depth: int) -> Fn:
        negate = isinstance(node.ops[0], ast.NotIn)
        container = node.comparators[0]
        if not isinstance(container, ast.List | ast.Tuple):
            raise ExprError(f"{self.segment(node)!r}: 'in' needs a literal list, e.g. x in ['a', 'b']")
        values = [self.literal(e) for e in container.elts]
        texts = [isinstance(v, str) for v in values]
        if any(texts) and not all(texts):
            raise ExprError(f"{self.segment(container)!r} mixes text and numbers")
        text_list = bool(values) and all(texts)
        left, kind = self.compile(node.left, depth)
        wrong = (NONE, NUMBER, BOOL) if text_list else (NONE, STRING)
        if values and kind in wrong:
            listed = "text" if text_list else "numbers"
            raise ExprError(f"{self.segment(node)!r} tests a {kind} value against a list of {listed}")
        what, left_what = self.segment(node), self.segment(node.left)
        numbers = np.array([] if text_list else values, dtype=np.float64)
        texts_set = frozenset(values) if text_list else frozenset()

        def run(cols: Columns) -> np.ndarray:
            arr = as_array(left(cols))
            if not values:
                hit = np.zeros(arr.shape, dtype=bool)
            elif text_list:
                if arr.dtype != object:
                    raise ExprError(f"{what!r}: a number column tested against a list of text")
                hit = isin_text(arr, texts_set)
            else:
                hit = np.isin(as_number(arr, left_what), numbers)
            return (~hit & ~missing(arr)) if negate else hit

        return run

    def literal(self, node: ast.expr) -> Any:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.literal(node.operand)
            if isinstance(inner, float):
                return -inner
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str):
                return value
            if isinstance(value, int | float):
                return self.number_of(node, value)
        raise ExprError(f"list entries must be numbers or text, not {self.segment(node)!r}")

    def number_of(self, node: ast.expr, value: int | float) -> float:
        """A literal number as the float every column holds; one beyond a float's range is refused
        (it would otherwise be infinite, or fail on its first batch)."""
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ExprError(f"the number {self.segment(node)[:24]!r} is too large (at most about 1.8e308)")
        return number

    def call(self, node: ast.Call, depth: int) -> tuple[Fn, str]:
        func = node.func
        if isinstance(func, ast.Attribute):
            raise self.reject(func, "attribute access")
        if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
            called = func.id if isinstance(func, ast.Name) else self.segment(func)
            raise ExprError(f"call to {called!r} is not allowed; the functions are {', '.join(FUNCTIONS)}")
        name = func.id
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.reject(node, "keyword or starred argument")
        count = len(node.args)
        if name in ("min", "max") and count < 2:
            raise ExprError(f"{self.segment(node)!r}: {name}() needs at least two arguments")
        if name not in ("min", "max") and count != 1:
            raise ExprError(f"{self.segment(node)!r}: {name}() takes exactly one argument")
        if name == "is_missing":
            arg, _ = self.compile(node.args[0], depth)
            return (lambda cols: missing(as_array(arg(cols)))), BOOL
        args = [self.number(a, depth) for a in node.args]
        if name == "abs":
            return (lambda cols: np.abs(args[0](cols))), NUMBER
        if name == "log1p":
            log1p = quiet(np.log1p)
            return (lambda cols: log1p(args[0](cols))), NUMBER
        pick = np.minimum if name == "min" else np.maximum
        return (lambda cols: functools.reduce(pick, [a(cols) for a in args])), NUMBER
