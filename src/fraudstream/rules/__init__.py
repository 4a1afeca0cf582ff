"""Analysts' rules over transaction fields and features, with allow and deny lists.

Conditions are written in a small, safe expression language (:mod:`fraudstream.expr.expression`), kept
in a YAML file (:mod:`fraudstream.rules.loader`) and applied to whole batches on top of the model's
decisions (:meth:`RuleSet.apply`). :class:`ReloadingRules` follows edits to the file while running.
"""

from fraudstream.expr.expression import CompiledExpr, compile_expr
from fraudstream.rules.errors import RulesError
from fraudstream.rules.loader import DEFAULT_RULES_PATH, load_rules, parse_rules
from fraudstream.rules.names import default_known_names, rule_columns
from fraudstream.rules.packaged import PRESET_RULES, packaged_rules_path
from fraudstream.rules.reload import ReloadingRules
from fraudstream.rules.ruleset import DECISIONS, EMPTY_RULES, LIST_FIELDS, Rule, RuleOutcome, RuleSet

__all__ = [
    "DECISIONS",
    "DEFAULT_RULES_PATH",
    "EMPTY_RULES",
    "LIST_FIELDS",
    "PRESET_RULES",
    "CompiledExpr",
    "ReloadingRules",
    "Rule",
    "RuleOutcome",
    "RuleSet",
    "RulesError",
    "compile_expr",
    "default_known_names",
    "load_rules",
    "packaged_rules_path",
    "parse_rules",
    "rule_columns",
]
