"""The rules shipped with the package, one set per feature-spec preset.

Each preset computes its own features (``handbook`` a customer's novelty and travel, ``paysim`` the
balances of a transfer, ...), so each has its own rules, written over those features only: a model
on a preset starts with every one of its preset's rules applying. The set is chosen by the model's
spec version, which names the preset it came from (``sparkov-1``); a spec of one's own gets the
default preset's rules, less those reading features it lacks, and is better served by a rules file
of one's own (FRAUD_RULES_PATH).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fraudstream.features.spec import DEFAULT_PRESET, PRESETS, read_spec
from fraudstream.rules.loader import DEFAULT_RULES_PATH

if TYPE_CHECKING:
    from fraudstream.features.plan import FeatureSet

_PRESETS_DIR: Final = Path(__file__).with_name("presets")

PRESET_RULES: Final[dict[str, Path]] = {
    preset: DEFAULT_RULES_PATH if preset == DEFAULT_PRESET else _PRESETS_DIR / f"{preset}.yaml"
    for preset in PRESETS
}
"""Each preset's packaged rules file: the default preset's is :data:`DEFAULT_RULES_PATH`."""


@cache
def _preset_versions() -> dict[str, str]:
    """Spec version → preset name, read from the packaged specs once."""
    return {str(read_spec(preset)[0]["version"]): preset for preset in PRESETS}


def preset_of(feature_set: FeatureSet) -> str | None:
    """The preset ``feature_set`` was built from, known by its spec version; ``None`` for a spec of
    one's own (a version no preset has)."""
    return _preset_versions().get(feature_set.version)


def packaged_rules_path(feature_set: FeatureSet) -> Path:
    """The packaged rules for a model on ``feature_set``: its preset's, else the default preset's."""
    return PRESET_RULES[preset_of(feature_set) or DEFAULT_PRESET]
