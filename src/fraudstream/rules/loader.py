"""Reading and checking rules files.

The format (YAML)::

    rules:
      - name: night_large              # letters, digits, _ . - ; unique
        when: is_night == 1 and amount > 2000
        action: BLOCK                  # APPROVE, FLAG, CHALLENGE, HOLD or BLOCK
        reason: large amount at night  # shown to reviewers
        alert: true                    # optional, default false
        shadow: false                  # optional: true records hits and changes nothing
    allow:
      customer_id: [C00001]
    deny:
      device_id: [D-bad]
      ip_address: ["10.0.0.1"]
    aggregates:                        # optional: features of the rules' own (rules.aggregates)
      fields: {extra.card_bin: text}
      features:
        - key: extra.card_bin
          aggregates: [{stats: [count], windows: [1h]}]

Lists may be given for ``customer_id``, ``device_id``, ``ip_address`` and ``merchant_id``; ids must
be quoted text. Everything is checked on load, so a bad edit is refused with a message naming the
rule and the problem instead of failing on the first batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from fraudstream.expr.expression import NUMBER, compile_expr
from fraudstream.rules.aggregates import Aggregates, parse_aggregates
from fraudstream.rules.errors import RulesError, UnknownNameError, suggest
from fraudstream.rules.ruleset import DECISIONS, LIST_FIELDS, Rule, RuleSet

TOP_KEYS: Final = ("rules", "allow", "deny", "aggregates")
RULE_KEYS: Final = ("name", "when", "action", "reason", "alert", "shadow")
DEFAULT_RULES_PATH: Final = Path(__file__).with_name("default_rules.yaml")
"""The rules shipped for the default preset's features (``handbook``): a starting point for analysts,
installed with the wheel. Other presets' are in :data:`fraudstream.rules.packaged.PRESET_RULES`."""

NAME_PATTERN: Final = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
"""What a rule's name may be: letters, digits and ``_ . -``, 64 at most, not starting with ``.`` or ``-``."""
_NAME: Final = re.compile(NAME_PATTERN)


logger = logging.getLogger(__name__)


def _shown(value: Any, most: int = 60) -> str:
    """``repr(value)``, cut to ``most`` characters: an error quotes what is wrong, never a whole file."""
    text = repr(value)
    return text if len(text) <= most else text[: most - 1] + "…"


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


MAX_TEXT: Final = 256 * 1024
"""The longest rules text read, in bytes: thousands of rules, and never a text whose parsing stalls."""


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses repeated keys (a second ``when:`` in a rule must not win silently) and
    anchors and aliases: a rules file has no use for them, and an alias nested in aliases expands a
    few hundred bytes into gigabytes (a "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (& and *) are not allowed in rules", event.start_mark
            )
        return super().compose_node(parent, index)


def _unique_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            repeated = key in seen
        except TypeError:
            continue
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_rules(
    path: str | Path, known_names: Iterable[str] | Mapping[str, str], *, skip_unknown: bool = False
) -> RuleSet:
    """Read, check and compile a rules file; an empty file gives a rule set with no rules.

    ``known_names`` are the names conditions may use (see :func:`fraudstream.rules.default_known_names`).
    Raises :class:`RulesError` for a missing or unreadable file, invalid YAML (with its line and
    column) and every problem :func:`parse_rules` finds.
    """
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RulesError(f"rules file not found: {path}") from None
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc.strerror or exc}") from None
    return rules_from_bytes(raw, known_names, source, skip_unknown=skip_unknown)


def rules_from_bytes(
    raw: bytes | str,
    known_names: Iterable[str] | Mapping[str, str],
    source: str = "<rules>",
    *,
    skip_unknown: bool = False,
) -> RuleSet:
    """Check and compile rules given as YAML text (JSON is YAML too), as :func:`load_rules` does a
    file's: the version is the hash of the text, and every problem is a :class:`RulesError`."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_TEXT:
        raise RulesError(f"the rules text is {len(raw):,} bytes; at most {MAX_TEXT:,}", source=source)
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_StrictLoader)  # a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise RulesError(f"not UTF-8 text (byte {exc.start})", source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(f"invalid YAML{where}: {problem}", source=source) from None
    return parse_rules(data, known_names, source, version=_digest(raw), skip_unknown=skip_unknown)


def parse_rules(
    data: Mapping[str, Any] | None,
    known_names: Iterable[str] | Mapping[str, str],
    source: str = "<rules>",
    *,
    version: str | None = None,
    skip_unknown: bool = False,
) -> RuleSet:
    """Check and compile rules already read from YAML (or built in code).

    ``version`` defaults to a hash of ``data``. With ``skip_unknown`` (the packaged rules), a rule that
    reads a name not known (a feature the model's spec does not compute) is left out instead of
    failing, and one line is logged saying which rules apply and what each left-out one reads (a
    warning when any is left out): a model on a spec of one's own still gets those of the packaged
    rules that apply, and is told why the others do not. Raises :class:`RulesError` naming the rule and the
    problem: missing or repeated names, unknown keys, bad actions, missing conditions or reasons,
    conditions that do not compile, unsupported list fields and non-text list entries.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RulesError("the file must be a mapping with 'rules', 'allow' and/or 'deny'", source=source)
    for key in data:
        if key not in TOP_KEYS:
            hint = suggest(str(key), TOP_KEYS)
            raise RulesError(
                f"unknown top-level key {_shown(key)}{hint}; expected {', '.join(TOP_KEYS)}", source=source
            )
    known: Mapping[str, str] | list[str] = (
        known_names if isinstance(known_names, Mapping) else list(known_names)
    )
    aggregates: Aggregates | None = None
    if data.get("aggregates") is not None:
        aggregates = parse_aggregates(data["aggregates"], known, source)
        fresh = dict.fromkeys(aggregates.names, NUMBER)
        known = {**known, **fresh} if isinstance(known, Mapping) else [*known, *fresh]
    entries = data.get("rules") or []
    if not isinstance(entries, list):
        raise RulesError("'rules' must be a list of rules", source=source)
    seen: dict[str, int] = {}
    rules = []
    left_out: list[tuple[str, str]] = []  # (rule, a name it reads that these features lack)
    for i, entry in enumerate(entries, start=1):
        try:
            rule = _parse_rule(i, entry, known, source)
        except UnknownNameError as exc:
            if not skip_unknown:
                raise
            left_out.append((exc.rule or f"#{i}", exc.name))
            continue
        if rule.name in seen:
            raise RulesError(f"duplicate rule name (rule #{seen[rule.name]} has it too)", rule.name, source)
        seen[rule.name] = i
        rules.append(rule)
    allow = _parse_lists(data.get("allow"), "allow", source)
    deny = _parse_lists(data.get("deny"), "deny", source)
    for name, ids in allow.items():
        both = ids & deny.get(name, frozenset())
        if both:
            raise RulesError(
                f"{name} {_shown(min(both))} is on both the allow and the deny list", source=source
            )
    if version is None:
        version = _digest(json.dumps(data, sort_keys=True, default=str).encode())
    if skip_unknown:
        level = logging.WARNING if left_out else logging.INFO
        logger.log(level, "%s", _applying(source, [r.name for r in rules], left_out))
    return RuleSet(rules=rules, allow=allow, deny=deny, version=version, source=source, aggregates=aggregates)


def _applying(source: str, kept: list[str], left_out: list[tuple[str, str]]) -> str:
    """One line: which rules of ``source`` apply to the model's features, and why the others do not."""
    total = len(kept) + len(left_out)
    if not left_out:
        return f"{source}: all {total} rules apply" + (f" ({', '.join(kept)})" if kept else "")
    if kept:
        applying = f"{len(kept)} of {total} rules apply ({', '.join(kept)}); the others read"
    else:
        applying = f"none of its {total} rules apply: they read"
    missing = ", ".join(f"{rule} reads {name}" for rule, name in left_out)
    return (
        f"{source}: {applying} features this model does not compute ({missing}). "
        "Rules over the model's own features go in a file of your own: FRAUD_RULES_PATH (docs/rules.md)"
    )


def _parse_rule(i: int, entry: Any, known: Iterable[str] | Mapping[str, str], source: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise RulesError(f"rule #{i} must be a mapping with {', '.join(RULE_KEYS[:4])}", source=source)
    name = entry.get("name")
    if name is None:
        raise RulesError(f"rule #{i} has no 'name'", source=source)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RulesError(
            f"rule #{i}: name {_shown(name)} must be 1-64 letters, digits, '_', '.' or '-'", source=source
        )

    def fail(problem: str) -> RulesError:
        return RulesError(problem, rule=name, source=source)

    for key in entry:
        if key not in RULE_KEYS:
            raise fail(
                f"unknown key {_shown(key)}{suggest(str(key), RULE_KEYS)}; a rule has {', '.join(RULE_KEYS)}"
            )
    for key in ("when", "action", "reason"):
        if entry.get(key) is None:
            raise fail(f"missing {key!r}")
    action = entry["action"]
    if not isinstance(action, str) or action.strip().upper() not in DECISIONS:
        raise fail(f"action {_shown(action)} is not one of {', '.join(DECISIONS)}")
    reason = entry["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise fail("'reason' must be non-empty text")
    alert = entry.get("alert", False)
    if not isinstance(alert, bool):
        raise fail(f"'alert' must be true or false, not {_shown(alert)}")
    shadow = entry.get("shadow", False)
    if not isinstance(shadow, bool):
        raise fail(f"'shadow' must be true or false, not {_shown(shadow)}")
    when = entry["when"]
    if isinstance(when, bool):
        when = str(when)
    try:
        expr = compile_expr(when, known)
    except RulesError as exc:
        raise exc.within(rule=name, source=source) from None
    return Rule(name, expr.text, action.strip().upper(), reason.strip(), expr, alert, shadow)


def _parse_lists(value: Any, kind: str, source: str) -> dict[str, frozenset[str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RulesError(f"'{kind}' must map {', '.join(LIST_FIELDS)} to lists of ids", source=source)
    out: dict[str, frozenset[str]] = {}
    for name, ids in value.items():
        if name not in LIST_FIELDS:
            hint = suggest(str(name), LIST_FIELDS)
            raise RulesError(
                f"{kind} list for {_shown(name)} is not supported{hint}; use {', '.join(LIST_FIELDS)}",
                source=source,
            )
        ids = [] if ids is None else ids
        if not isinstance(ids, list):
            raise RulesError(f"{kind}.{name} must be a list of ids, not {_shown(ids)}", source=source)
        for entry in ids:
            if not isinstance(entry, str) or not entry.strip():
                raise RulesError(
                    f'{kind}.{name}: entry {_shown(entry)} is not text; write ids in quotes, e.g. "{entry}"'[
                        :200
                    ],
                    source=source,
                )
        out[name] = frozenset(entry.strip() for entry in ids)
    return out
