"""The challenger: a second bundle scoring the champion's feature rows, in shadow or for its A/B share.

The champion's features are computed once and handed to both models, so a challenger must read the
same features (same feature-set specification); :class:`Shadow` refuses another one when it is built,
which is when a server starts. Its decision is its own model decision, at its own thresholds, with the
same rules applied as the champion's, so the two can be compared row by row. In shadow only the
champion's acts; with A/B routing the challenger's acts for the customers routed to it, with reasons
from its own explaining model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from fraudstream.models.bands import NO_BANDS, ScoreBands
from fraudstream.models.bundle import ModelBundle
from fraudstream.rules.ruleset import RuleOutcome
from fraudstream.scoring.served import Explained, ServedModels


class ChallengerError(ValueError):
    """A challenger that cannot be shadowed beside this champion (another feature set)."""


class ShadowOutcome(NamedTuple):
    """The challenger's view of a batch: probability, decision at its thresholds, and the rules'
    outcome on top of that decision (``outcome.decision`` is its final decision)."""

    probability: np.ndarray
    model_decision: np.ndarray
    outcome: RuleOutcome
    explained: Explained | None = None
    """Each row's picked contributions by the challenger's explaining model, when asked for."""


class Shadow:
    """Scores feature rows with the challenger ``bundle``: ensemble probabilities and decisions, through
    the same models path as the champion's (:class:`ServedModels`), so the shadow's probability is the
    one scoring with the challenger alone gives. ``descriptions`` are the features' (for reasons), and
    ``feature_set`` the one computing them (for explanations).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        champion: ModelBundle,
        descriptions: list[str] | None = None,
        feature_set: Any = None,
    ) -> None:
        mine, theirs = bundle.feature_set(), champion.feature_set()
        if not mine.computes_same(theirs):
            raise ChallengerError(
                f"FRAUD_CHALLENGER_URI: challenger {bundle.manifest.version} reads another feature set "
                f"than champion {champion.manifest.version} ({len(mine.names)} features against "
                f"{len(theirs.names)}); a challenger in shadow must be trained on the champion's feature "
                "spec, since both models score the same computed features"
            )
        self.bundle = bundle
        self.models = ServedModels(bundle, descriptions, feature_set)
        self.explainer = self.models.explainer

    @property
    def version(self) -> str:
        return self.bundle.manifest.version

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.bundle.manifest.thresholds)

    def probability(self, X: np.ndarray) -> np.ndarray:
        """The challenger's ensemble probability of each row of ``X``."""
        return self.models.score(X).probability

    def decide(
        self, X: np.ndarray, columns: Any, rules: Any, bands: ScoreBands = NO_BANDS, *, explain: bool = False
    ) -> ShadowOutcome:
        """Probabilities, and decisions: the model's at its thresholds and the serving ``bands``, then
        ``rules`` applied to ``columns`` (the same rule columns the champion's decision was ruled on); with
        ``explain``, the challenger's picked contributions of every row (for the rows it decides)."""
        probability, by_model, _, explained = self.models.score(X, explain=explain)
        by_model = bands.apply(probability, by_model)
        outcome = rules.apply(columns, by_model)
        outcome.decision = np.asarray(outcome.decision, dtype=object)
        return ShadowOutcome(probability, by_model, outcome, explained)
