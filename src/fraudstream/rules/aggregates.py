"""Runtime aggregates: features a rules version declares for its own rules, computed without a retrain.

A rules file (or a version saved in the database) may declare, under ``aggregates:``, features written
in the feature spec's language (:mod:`fraudstream.features.spec`): the user's fields they read
(``fields:``), feature entries (``features:``, ``key`` entries above all: counts, sums, distinct counts
and the rest over each key's earlier events within windows, filtered by ``where``) and optionally how
far back they look (``retention:``, by default the longest window they declare)::

    aggregates:
      fields: {extra.card_bin: text, extra.billing_country: text}
      features:
        - key: extra.card_bin
          name: bin
          aggregates:
            - {stats: [count], windows: [1h], where: country != extra.billing_country,
               name: bin_foreign_count_1h}

The file's rules read them by name, as they read the model's features. The declaration compiles with
the spec compiler into a :class:`~fraudstream.features.plan.FeatureSet` of its own, so the same kernels
compute it, point-in-time, over a feature state of its own: online by
:class:`~fraudstream.pipeline.aggregates.LiveAggregates`, over stored history by the rules backtest
(the whole-history path of the same engine).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from fraudstream.rules.errors import RulesError, suggest

if TYPE_CHECKING:
    from fraudstream.features.engine import FeatureEngine
    from fraudstream.features.plan import FeatureSet

SECTION_KEYS: Final = ("fields", "features", "retention")
"""What an ``aggregates:`` section holds: a feature spec less its version, which the rules' is."""
MAX_AGGREGATES: Final = 64
"""The most features one rules version may declare: each is computed for every transaction."""
MAX_RETENTION: Final = 366 * 86400.0
"""How far back, in seconds, runtime aggregates may look: their state holds every event that far back."""
SPEC_VERSION: Final = "rules-aggregates"
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{[A-Za-z_]*\}|[{}]")
"""In a ``name`` or ``description`` template: an escaped brace, a plain ``{placeholder}``, or a brace
that starts anything else (a format spec, an attribute, an index), which is refused."""


@dataclass(frozen=True, eq=False)
class Aggregates:
    """A rules version's ``aggregates:`` section, compiled: its feature set and a digest of it.

    ``digest`` names what is computed (the spec as compiled, whatever its YAML looked like): two
    versions with the same digest share one feature state, and a version whose digest differs from
    the one computed online needs its state warmed first.
    """

    feature_set: FeatureSet
    digest: str

    @property
    def names(self) -> list[str]:
        """The aggregates' names, in the order of their columns."""
        return self.feature_set.names

    @property
    def retention(self) -> float:
        """How far back, in seconds of event time, the aggregates look: what their state keeps."""
        return self.feature_set.retention

    @cached_property
    def engine(self) -> FeatureEngine:
        """The engine that computes them, online over a state or offline over a whole history."""
        from fraudstream.features.engine import FeatureEngine

        return FeatureEngine(self.feature_set)

    @cached_property
    def reads_labels(self) -> bool:
        """Whether any aggregate reads fraud labels: then arrived labels are recorded in its state."""
        return any(group.labels for group in self.feature_set.groups)


def parse_aggregates(
    section: Any, known: Iterable[str] | Mapping[str, str], source: str = "<rules>"
) -> Aggregates:
    """Check and compile an ``aggregates:`` section; ``known`` are the names rules may read besides
    (the transaction's fields and the model's features), which no aggregate may take.

    Raises :class:`RulesError` naming the entry and the problem: what the feature spec's checks refuse
    (an unknown field or setting, a window longer than the retention, a ``where`` that does not
    compile, names that repeat), a categorical entry (it is learned at training), a name rules could not
    read or that another name already has, and more than :data:`MAX_AGGREGATES` features.
    """
    from fraudstream.features import spec as S
    from fraudstream.features.plan import FeatureSet

    if not isinstance(section, Mapping):
        raise RulesError(
            "'aggregates' must be a mapping with fields, features and optionally retention", source=source
        )
    for key in section:
        if key not in SECTION_KEYS:
            hint = suggest(str(key), SECTION_KEYS)
            raise RulesError(
                f"aggregates: unknown key {str(key)[:60]!r}{hint}; it takes {', '.join(SECTION_KEYS)}",
                source=source,
            )
    _plain_templates(section, source)
    data: dict[str, Any] = {"version": SPEC_VERSION, **section}
    try:
        spec, entries = S.parse_spec(data, "aggregates")
        for i, entry in enumerate(entries):
            if isinstance(entry, S.CategoricalFeature):
                raise S.SpecError(
                    f"aggregates: features[{i}]: a categorical entry is learned from training rows; "
                    "runtime aggregates take key, row, calendar and age entries"
                )
        if "retention" not in section:
            data["retention"] = _longest_window(entries) or spec.retention
        feature_set = FeatureSet(data, "aggregates")
    except (S.SpecError, ValueError, TypeError, LookupError, AttributeError) as exc:
        raise RulesError(str(exc), source=source) from None
    if not feature_set.retention <= MAX_RETENTION:
        raise RulesError(
            f"aggregates: they look back {S.window_name(feature_set.retention)}; at most "
            f"{S.window_name(MAX_RETENTION)} (the retention, or the longest window)",
            source=source,
        )
    names = feature_set.names
    if len(names) > MAX_AGGREGATES:
        raise RulesError(f"aggregates: {len(names)} features; at most {MAX_AGGREGATES}", source=source)
    taken = set(known)
    for name in names:
        if not _NAME.fullmatch(name):
            raise RulesError(
                f"aggregates: {name!r} cannot be read by a rule: give its entry a name of letters, digits "
                "and '_' (at most 64, not starting with a digit)",
                source=source,
            )
        if name in taken:
            raise RulesError(
                f"aggregates: {name!r} is already a name rules read (a transaction field or a feature of the "
                "model): name the aggregate apart",
                source=source,
            )
    compiled = {  # each entry as checked: durations in seconds, one value as a list, defaults filled in
        "retention": feature_set.retention,
        "fields": dict(feature_set.spec.fields),
        "features": [entry.model_dump(mode="json") for entry in feature_set.entries],
    }
    text = json.dumps(compiled, sort_keys=True, separators=(",", ":"), default=str)
    return Aggregates(feature_set, hashlib.sha256(text.encode()).hexdigest()[:16])


def _plain_templates(section: Mapping[str, Any], source: str) -> None:
    """Refuse a ``name`` or ``description`` template with more than ``{placeholder}`` in braces: a
    version comes over the API, and a format spec (``{key:>999999999}``) or an attribute would be run."""
    features = section.get("features")
    for i, entry in enumerate(features if isinstance(features, list) else []):
        if not isinstance(entry, Mapping):
            continue
        aggregates = entry.get("aggregates")
        parts = [(f"features[{i}]", entry)] + [
            (f"features[{i}].aggregates[{j}]", agg)
            for j, agg in enumerate(aggregates if isinstance(aggregates, list) else [])
            if isinstance(agg, Mapping)
        ]
        for where, part in parts:
            for key in ("name", "description"):
                text = part.get(key)
                if isinstance(text, str) and any(m in ("{", "}", "{}") for m in _PLACEHOLDER.findall(text)):
                    raise RulesError(
                        f"aggregates: {where}.{key}: a template takes only placeholders such as {{key}} and "
                        "{window} in braces (write {{ and }} for a brace)",
                        source=source,
                    )


def _longest_window(entries: list[Any]) -> float | None:
    """The longest window (or label delay) any entry's aggregates declare, ``None`` when none does."""
    longest: float | None = None
    for entry in entries:
        for agg in getattr(entry, "aggregates", None) or []:
            windows = list(getattr(agg, "windows", None) or [])
            singles = [getattr(agg, attr, None) for attr in ("window", "delay")]  # a label delay too
            for w in [*windows, *(s for s in singles if s is not None)]:
                longest = w if longest is None else max(longest, w)
    return longest
