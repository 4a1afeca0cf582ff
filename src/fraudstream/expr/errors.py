"""The one error type of the expression language: it says which file, which rule and what is wrong.

Rules and feature specs are both written in the language, so both report its errors; the rules call
it :class:`~fraudstream.rules.RulesError`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

SIMILAR = 0.8
"""How alike a name must be to one known to be suggested for it (difflib's ratio): ``amout`` is
``amount`` (0.91), ``customer_count_1h`` is ``customer_count_24h`` (0.97); ``new_device`` is not
``device_id`` (0.74), an unrelated name that merely shares a word."""


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'amount'?)`` for a near miss, else ``""``: typos are the commonest rule bug."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=SIMILAR)
    return f" (did you mean {close[0]!r}?)" if close else ""


class ExprError(ValueError):
    """A rules file, rule, feature entry or expression that cannot be used.

    ``problem`` is what is wrong, ``rule`` the rule's name when the problem is inside one and
    ``source`` the file (or ``"<rules>"``). Analysts edit these files by hand, so the message is meant
    to be shown to them as is: ``rules.yaml: rule 'night_big': unknown name 'amout' (did you mean
    'amount'?)``.
    """

    def __init__(self, problem: str, rule: str | None = None, source: str | None = None) -> None:
        self.problem = problem
        self.rule = rule
        self.source = source
        parts = [source] if source else []
        if rule is not None:
            parts.append(f"rule {rule!r}")
        super().__init__(": ".join([*parts, problem]))

    def within(self, rule: str | None = None, source: str | None = None) -> ExprError:
        """The same problem, placed in a rule and/or file (context known only to the caller)."""
        return type(self)(
            self.problem,
            rule=self.rule if rule is None else rule,
            source=self.source if source is None else source,
        )


class UnknownNameError(ExprError):
    """A condition reads a name that is not known: a typo, or a feature the model's spec lacks.
    ``name`` is that name."""

    def __init__(
        self, problem: str, rule: str | None = None, source: str | None = None, *, name: str = ""
    ) -> None:
        super().__init__(problem, rule, source)
        self.name = name

    def within(self, rule: str | None = None, source: str | None = None) -> ExprError:
        placed = super().within(rule, source)
        assert isinstance(placed, UnknownNameError)
        placed.name = self.name
        return placed
