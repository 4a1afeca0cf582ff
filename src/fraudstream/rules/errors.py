"""The rules' error: the expression language's, since every problem with a rule is one of its text."""

from __future__ import annotations

from fraudstream.expr.errors import ExprError, UnknownNameError, suggest

RulesError = ExprError
"""A rules file, rule or condition that cannot be used: the message names the file and the rule."""

__all__ = ["RulesError", "UnknownNameError", "suggest"]
