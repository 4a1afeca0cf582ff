"""The challenger in shadow: a second bundle scoring the champion's feature rows, deciding nothing.

The champion's features are computed once and handed to both models, so a challenger must read the
same features (same feature-set specification); :class:`Shadow` refuses another one when it is built,
which is when a server starts. Its decision is its own model decision, at its own thresholds, with the
same rules applied as the champion's, so the two can be compared row by row; only the champion's acts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudstream.models.bundle import ModelBundle
from fraudstream.models.ensemble import ensemble_probability
from fraudstream.scoring._few import FewRows
from fraudstream.scoring.compiled import compile_models


class ChallengerError(ValueError):
    """A challenger that cannot be shadowed beside this champion (another feature set)."""


class Shadow:
    """Scores feature rows with the challenger ``bundle``: ensemble probabilities and decisions.

    ``few_rows`` is the champion scorer's: batches up to that many rows take the few-rows path, which
    gives the batch path's probabilities bit for bit (see :mod:`._few`), so the shadow's probability
    is the one scoring with the challenger alone gives.
    """

    def __init__(self, bundle: ModelBundle, champion: ModelBundle, names: list[str], few_rows: int) -> None:
        mine, theirs = bundle.feature_set(), champion.feature_set()
        if not mine.computes_same(theirs):
            raise ChallengerError(
                f"FRAUD_CHALLENGER_URI: challenger {bundle.manifest.version} reads another feature set "
                f"than champion {champion.manifest.version} ({len(mine.names)} features against "
                f"{len(theirs.names)}); a challenger in shadow must be trained on the champion's feature "
                "spec, since both models score the same computed features"
            )
        self.bundle = bundle
        self.models = compile_models(bundle)
        self._few = (
            FewRows(self.models, bundle.manifest, None, names, 0, [""] * len(names)) if few_rows else None
        )
        self._few_rows = few_rows if self._few is not None else 0

    @property
    def version(self) -> str:
        return self.bundle.manifest.version

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.bundle.manifest.thresholds)

    def probability(self, X: np.ndarray) -> np.ndarray:
        """The challenger's ensemble probability of each row of ``X``."""
        if self._few is not None and len(X) <= self._few_rows:
            return self._few.probabilities(X)[0]
        manifest = self.bundle.manifest
        raw = {name: model.score(X) for name, model in self.models.items()}
        return ensemble_probability(raw, manifest.calibration, manifest.weights)

    def decide(self, X: np.ndarray, columns: Any, rules: Any) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities, and decisions: the model's at its thresholds, then ``rules`` applied to
        ``columns`` (the same rule columns the champion's decision was ruled on)."""
        from fraudstream.scoring.scorer import model_decisions

        probability = self.probability(X)
        outcome = rules.apply(columns, model_decisions(probability, self.bundle.manifest.thresholds))
        return probability, np.asarray(outcome.decision, dtype=object)
