"""The words of an explaining model (:class:`~fraudstream.events.explanation.Explainer`), made from the
feature spec that computes its features and the training data's medians.

Each feature's sentence follows from what computes it, as the plan compiled it: a count over a window
reads ``12 transactions in the last hour for this customer``, time since the first event ``device
first seen 3 minutes ago``, a ratio ``amount 4.8× this customer's 30-day average``, a first-seen flag
``device not seen before for this customer``. A feature this module has no phrase for (a filtered
aggregate, an expression, a custom description) reads as its description and value, so every spec,
and every feature a later spec language adds, gets a sentence.

The entity's usual value is found in the spec too: for a row's field (``amount``), the first key's
median of that field, else its 50th percentile, else its average, kept as a statistic or as the
field's ratio to it (the usual value is then the field over the ratio), over 30 days or the longest
window it has, unfiltered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fraudstream.events.explanation import (
    AMOUNT,
    COUNT,
    FLAG,
    KM,
    KMH,
    NUMBER,
    SD,
    SECONDS,
    SHARE,
    TIMES,
    Explainer,
    Wording,
)
from fraudstream.features import _describe as D
from fraudstream.features import plan as P
from fraudstream.features import spec as S
from fraudstream.features.plan import FeatureSet

MONTH = 30 * S.DAY
"""The window an entity's usual value is preferably taken over."""
_AGAINST = {P.RATIO_MEAN: "average", P.RATIO_MEDIAN: "median", P.RATIO_MAX: "largest"}
_CENTRES = {P.MEDIAN: 0, P.QUANTILE: 1, P.MEAN: 2}
"""The statistics an entity's usual value is read from, best first (a quantile only at 50 %)."""
_RATIOS = {P.RATIO_MEDIAN: 0, P.RATIO_QUANTILE: 1, P.RATIO_MEAN: 2}
"""The same, as a row's ratio to them."""


def explainer_words(
    model: str,
    top: int,
    names: Sequence[str],
    descriptions: Sequence[str],
    feature_set: FeatureSet | None,
    medians: np.ndarray | None,
) -> Explainer:
    """The words of ``model`` over the features ``names`` (described by ``descriptions``), phrased from
    ``feature_set`` when it computes exactly those features (each one's description and value
    otherwise), with the training data's ``medians`` (NaN where unknown) as population values."""
    words = _generic(names, descriptions)
    if feature_set is not None and list(feature_set.names) == list(names):
        try:
            words = _phrased(feature_set, words)
        except (IndexError, KeyError, ValueError):  # a plan this module does not know: its words
            words = _generic(names, descriptions)
    if medians is not None and len(medians) == len(names):
        words = [
            _with(w, median=float(m)) if np.isfinite(m) else w for w, m in zip(words, medians, strict=True)
        ]
    return Explainer(model=model, top=top, features=tuple(words))


def _generic(names: Sequence[str], descriptions: Sequence[str]) -> list[Wording]:
    return [_plain(n, d) for n, d in zip(names, descriptions, strict=True)]


def _plain(name: str, description: str, unit: str = NUMBER) -> Wording:
    return Wording(name=name, description=description, text=f"{_braced(description)}: {{value}}", unit=unit)


def _braced(text: str) -> str:
    """``text`` as a part of a format string: its braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


def _with(words: Wording, **changes: Any) -> Wording:
    return Wording(**{**words.to_dict(), **changes})


def _phrased(fs: FeatureSet, words: list[Wording]) -> list[Wording]:
    out = list(words)
    rows = [e for e in fs.entries if not isinstance(e, S.KeyFeatures)]
    keys = [e for e in fs.entries if isinstance(e, S.KeyFeatures)]
    for entry, (col0, width, _) in zip(rows, fs.rows, strict=True):
        for j in range(col0, col0 + width):
            out[j] = _row_words(fs, entry, j - col0, out[j])
    for entry, group in zip(keys, fs.groups, strict=True):
        for r in range(group.width):
            j = group.col0 + r
            out[j] = _key_words(fs, entry, group, r, out[j])
    return out


def _row_words(fs: FeatureSet, entry: Any, r: int, words: Wording) -> Wording:
    """A row feature's words: a field's value against the entity's usual one, a flag's two sentences."""
    name, about = words.name, _braced(words.description)
    if isinstance(entry, S.RowFeature) and entry.row in fs.kinds:
        unit = AMOUNT if entry.row == "amount" else NUMBER
        usual = _entity_usual(fs, entry.row)
        usual_name, usual_of, ratio = usual if usual else (None, None, False)
        return Wording(
            name=name, description=words.description, text=f"{about} {{value}}", unit=unit,
            usual=usual_name, usual_of=usual_of, usual_ratio=ratio or None,
        )  # fmt: skip
    if isinstance(entry, S.CalendarFeature) and entry.calendar[r] in ("is_night", "is_weekend"):
        return Wording(
            name=name, description=words.description, text=words.description, unit=FLAG,
            otherwise=f"not {words.description}" if entry.description is None else None,
        )  # fmt: skip
    if isinstance(entry, S.CategoricalFeature):
        values = entry.values or []
        noun = D.noun(entry.categorical)
        if entry.description is not None:
            otherwise = None
        elif r < len(values):
            otherwise = f"{noun} is not {values[r]}"
        else:
            otherwise = f"{noun} is one of the most frequent at training"
        return Wording(
            name=name, description=words.description, text=words.description, unit=FLAG, otherwise=otherwise
        )
    return words


def _entity_usual(fs: FeatureSet, field: str) -> tuple[str, str, bool] | None:
    """The feature holding an entity's usual value of ``field``, what it is (``this customer's 30-day
    median``) and whether it is a ratio (the usual value is the field's over it): the first key,
    unfiltered, with a median of the field, else its 50th percentile, else its average, as a statistic
    or as the field's ratio to it, over 30 days if it has that window, else the longest."""
    for entry, group in zip((e for e in fs.entries if isinstance(e, S.KeyFeatures)), fs.groups, strict=True):
        if entry.where is not None:
            continue
        found: list[tuple[int, bool, bool, float, int]] = []  # rank, ratio, not 30 days, -window, column
        for r in range(group.width):
            op, stream, window, row_value = (int(v) for v in group.ops[r])
            ratio = op in _RATIOS
            rank = _RATIOS[op] if ratio else _CENTRES.get(op)
            if rank is None or (op in (P.QUANTILE, P.RATIO_QUANTILE) and group.params[r] != 0.5):
                continue
            value, flag = (int(v) for v in group.streams[stream])
            if flag >= 0 or group.values[value] != field or (ratio and group.values[row_value] != field):
                continue
            seconds = float(group.bwin[window])
            found.append((rank, ratio, seconds != MONTH, -seconds, group.col0 + r))
        if found:
            rank, ratio, _, seconds, j = min(found)
            stat = "average" if rank == _CENTRES[P.MEAN] else "median"
            return fs.names[j], f"this {D.entity(entry)}'s {D.span(-seconds)} {stat}", ratio
    return None


def _key_words(fs: FeatureSet, entry: S.KeyFeatures, group: P.Group, r: int, words: Wording) -> Wording:
    """A key feature's words, by the operation that computes it."""
    op, a, window, v = (int(x) for x in group.ops[r])
    seconds = float(group.bwin[window])
    name, description = words.name, words.description
    entity = D.entity(entry)
    # a filtered key, or a description of the entry's own, is said as it is
    filtered = entry.where is not None or not description.startswith(f"{entity}: ")
    this = f"this {_braced(entity)}"
    if op in (P.COUNT, P.DISTINCT, P.KNOWN_FRAUD, P.ABOVE):
        unit = COUNT
    elif op in (P.FRAUD_RATE, P.KNOWN_SHARE, P.ABOVE_SHARE):
        unit = SHARE
    elif op in (P.SINCE_LAST, P.SINCE_FIRST, P.SINCE_KNOWN, P.SINCE_FIRST_KNOWN, P.KNOWN_SPAN):
        unit = SECONDS
    elif op in (P.SUM, P.MEAN, P.MIN, P.MAX, P.STD, P.MEDIAN, P.QUANTILE):
        value, _ = (int(x) for x in group.streams[a])
        unit = AMOUNT if group.values[value] == "amount" else NUMBER
    elif op == P.DISTANCE:
        unit = KM
    elif op == P.SPEED:
        unit = KMH
    elif op == P.NEW:
        unit = FLAG
    elif op in (*_AGAINST, P.RATIO_QUANTILE):
        unit = TIMES
    elif op == P.ZSCORE:
        unit = SD
    else:  # an operation added after this module: its description and value
        return words
    text = None
    otherwise = None
    if not filtered and not _filters(group, op, a):
        during = D.window(seconds)
        if op == P.COUNT:
            text = f"{{value}} transaction{{s}} {during} for {this}"
        elif op == P.DISTINCT:
            field = D.plural(group.coded[int(group.dslots[a, 0])])
            text = f"{{value}} distinct {_braced(field)} {during} for {this}"
        elif op == P.KNOWN_FRAUD:
            text = f"{{value}} known fraud{{s}} {during} for {this}"
        elif op == P.SINCE_FIRST:
            text = f"{_braced(entity)} first seen {{value}} ago"
        elif op == P.SINCE_LAST:
            text = f"previous transaction of {this} {{value}} ago"
        elif op == P.SINCE_KNOWN:
            text = f"latest known fraud of {this} {{value}} ago"
        elif op == P.SINCE_FIRST_KNOWN:
            text = f"first known fraud of {this} {{value}} ago"
        elif op == P.NEW:
            field = D.noun(group.coded[int(group.nov[a])])
            text = f"{_braced(field)} not seen before for {this}"
            otherwise = f"{_braced(field)} seen before for {this}"
        elif op in (P.DISTANCE, P.SPEED):
            text = f"{{value}} from the previous transaction's location of {this}"
        elif op in (*_AGAINST, P.RATIO_QUANTILE, P.ZSCORE):
            quantity = _braced(D.value_noun(_read(group.values[v]), fs.kinds))
            value, _ = (int(x) for x in group.streams[a])
            of = _braced(D.value_noun(_read(group.values[value]), fs.kinds))
            of = "" if of == quantity else f" {of}"
            span = D.span(seconds)
            if op == P.ZSCORE:
                text = f"{quantity} {{value}} standard deviations {{above}} {this}'s {span} average"
            else:
                stat = _AGAINST.get(op) or f"{D.ordinal(round(float(group.params[r]) * 100))} percentile"
                text = f"{quantity} {{value}} {this}'s {span} {stat}{of}"
    if text is None:
        if unit == FLAG:
            return Wording(name=name, description=description, text=description, unit=FLAG)
        said = _plain(name, description, unit)
        if not filtered:  # "customer: total amount in the last day" → "total amount ... for this customer"
            said = _with(said, text=f"{_braced(description[len(entity) + 2 :])} for {this}: {{value}}")
        return said
    usually = "usually {usual} ago" if text.endswith(" ago") else "usually {usual}"
    return Wording(
        name=name, description=description, text=text, unit=unit, otherwise=otherwise, usually=usually
    )


def _filters(group: P.Group, op: int, a: int) -> bool:
    """Whether the operation reads only some of the key's events (a stream or a distinct count with a
    condition): its phrase would leave the condition out, so its description is said instead."""
    if op in (P.NEW, P.DISTANCE, P.SPEED):
        return False
    if op == P.DISTINCT:
        return int(group.dslots[a, 1]) >= 0
    return int(group.streams[a, 1]) >= 0


def _read(column: str) -> str:
    """A schema column's field, or its expression as written (``=extra.a - amount`` → ``extra.a -
    amount``)."""
    return column[1:] if column.startswith("=") else column
