"""A small, safe expression language for rule conditions and feature values, evaluated over whole
columns at once.

Rule conditions and feature expressions are written by analysts and loaded at run time, so they are
never given to Python's ``eval``: the text is parsed with :func:`ast.parse` and only a whitelist of
constructs is accepted:

* ``and``, ``or``, ``not``; comparisons ``< <= > >= == !=``, chained too (``1 < x <= 5``);
* ``x in [...]`` / ``x not in (...)`` against a literal list of numbers or of strings;
* ``+ - * /`` and unary minus; names of columns; number, string, ``True``/``False``/``None`` constants;
* the functions ``abs(x)``, ``min(a, b, ...)``, ``max(a, b, ...)``, ``log1p(x)``, ``is_missing(x)``.

The accepted tree is turned into closures over numpy arrays, so one call evaluates a rule for a
whole batch. ``and`` and ``or`` stop as Python's do, once every row of the batch is decided: the rest
of the condition is then not evaluated, nor are its errors raised (a column the batch lacks, say).
Missing values (NaN in number columns, ``None`` in string columns) make every comparison and every
``in`` test False, ``!=`` and ``not in`` included; ``not`` simply negates, so ``not (x > 3)`` is True
where ``x`` is missing. Test for missing values explicitly with ``is_missing(x)`` (``x == None`` and
``x != None`` mean the same). Arithmetic keeps NaN, and dividing
by zero gives NaN rather than infinity. A bare number column used as a condition means ``x != 0``
(NaN counts as False), which suits 0/1 flags such as ``is_night``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np

from fraudstream.expr._compiler import MAX_DEPTH, Compiler, Fn
from fraudstream.expr._lang import ANY, FUNCTIONS, NUMBER, STRING
from fraudstream.expr.columns import Columns, as_array, as_condition
from fraudstream.expr.errors import ExprError

MAX_LENGTH: Final = 1000
KINDS: Final = (NUMBER, STRING, ANY)

__all__ = [
    "ANY",
    "FUNCTIONS",
    "KINDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "NUMBER",
    "STRING",
    "CompiledExpr",
    "compile_expr",
    "compile_value",
]


class CompiledExpr:
    """A checked condition, ready to be evaluated over a batch.

    ``text`` is what the analyst wrote and ``names`` the columns it reads, so a caller can check up
    front that a batch carries them. Two expressions are equal when their texts are.
    """

    __slots__ = ("_fn", "_value", "names", "text")

    def __init__(self, text: str, names: frozenset[str], fn: Fn, *, value: bool = False) -> None:
        self.text = text
        self.names = names
        self._fn = fn
        self._value = value

    def evaluate(self, columns: Mapping[str, Any], n: int | None = None) -> np.ndarray:
        """Boolean array of length ``n`` (default: the length of the columns): where the condition holds.

        Raises :class:`ExprError` when a column it reads is absent, has the wrong length, or holds
        text where a number is needed (or the reverse).
        """
        view = columns if isinstance(columns, Columns) and n in (None, columns.n) else Columns(columns, n)
        if self._value:
            with np.errstate(all="ignore"):
                numbers = np.asarray(self._fn(view), dtype=np.float64)
            if numbers.shape == (view.n,):
                return numbers.copy()  # it may be a column of the batch itself
            return np.full(view.n, numbers, dtype=np.float64)
        out = self.mask(view)
        if out.shape == (view.n,):
            return out.copy()
        return np.broadcast_to(out, (view.n,)).copy()

    def mask(self, view: Columns) -> np.ndarray:
        """Where the condition holds, without :meth:`evaluate`'s copy: only to be read, never written.

        Of shape ``(view.n,)``, or ``()`` for a condition that reads no column; it may be one of
        the batch's own columns. :meth:`RuleSet.apply <fraudstream.rules.RuleSet.apply>` uses it
        because, for a batch of one row, that copy costs about as much as the comparison.
        """
        return as_condition(as_array(self._fn(view)), self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompiledExpr) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"CompiledExpr({self.text!r})"


def compile_value(text: str, known: Iterable[str] | Mapping[str, str]) -> CompiledExpr:
    """:func:`compile_expr` for a number rather than a condition (``extra.balance - amount``): its
    :meth:`~CompiledExpr.evaluate` gives float64 values, NaN where an input is missing."""
    return _compile(text, known, value=True)


def compile_expr(text: str, known: Iterable[str] | Mapping[str, str]) -> CompiledExpr:
    """Check ``text`` against the whitelist and the ``known`` names, and compile it.

    ``known`` lists the names a condition may read; as a mapping it also gives each name's kind
    (``"number"``, ``"string"`` or ``"any"``), which lets type mistakes such as ``country > 3`` be
    caught here rather than on the first batch. The text may span lines. Raises :class:`ExprError`
    naming the first unsupported construct or unknown name.
    """
    return _compile(text, known, value=False)


def _compile(text: str, known: Iterable[str] | Mapping[str, str], *, value: bool) -> CompiledExpr:
    if not isinstance(text, str):
        raise ExprError(f"a condition must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"condition is {len(text)} characters long; the limit is {MAX_LENGTH}")
    source = text.replace("\r", " ").replace("\n", " ").strip()
    if not source:
        raise ExprError("condition is empty")
    if isinstance(known, Mapping):
        kinds = {str(k): str(v) for k, v in known.items()}
        for name, kind in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"kind of {name!r} must be one of {', '.join(KINDS)}, not {kind!r}")
    else:
        kinds = dict.fromkeys(known, ANY)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        offset = exc.offset or 0
        where = f"at column {offset}" if 0 < offset <= len(source) else "at the end"
        raise ExprError(f"syntax error in {source!r} {where}: {exc.msg}") from None
    except ValueError as exc:
        raise ExprError(f"cannot parse {source!r}: {exc}") from None
    compiler = Compiler(source, kinds)
    if value:
        number = compiler.number(tree.body, 1)
        return CompiledExpr(source, frozenset(compiler.names), number, value=True)
    fn = compiler.condition(tree.body, 1)
    return CompiledExpr(source, frozenset(compiler.names), fn)
