"""The scorer: a batch of transactions → features → models → ensemble probability → rules → decisions.

One code path for one transaction or ten thousand. It reads the feature state and changes nothing:
storing the decisions and recording the batch are the :class:`~fraudstream.pipeline.decider.Decider`'s
steps, in the order it states.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.explanation import Explainer
from fraudstream.events.reasons import rule_direction
from fraudstream.features.engine import FeatureEngine
from fraudstream.models.bands import NO_BANDS, ScoreBands
from fraudstream.models.bundle import ModelBundle
from fraudstream.pipeline._challenger import ChallengerError, Shadow, ShadowOutcome
from fraudstream.pipeline._routing import routed_rows
from fraudstream.pipeline.aggregates import LiveAggregates
from fraudstream.rules.names import rule_columns
from fraudstream.rules.ruleset import RuleOutcome
from fraudstream.scoring._explain import TOP_REASONS
from fraudstream.scoring.served import Explained, ServedModels
from fraudstream.state.base import FeatureState

log = logging.getLogger(__name__)


__all__ = [
    "TOP_REASONS",
    "ChallengerError",
    "ModelSwapError",
    "ScoredBatch",
    "Scorer",
    "ScoringError",
]


class ModelSwapError(ValueError):
    """A model that cannot replace the served one in place (another feature set): it needs a restart."""


class ScoringError(RuntimeError):
    """A batch could not be scored (as opposed to a transaction that failed validation)."""


@dataclass
class ScoredBatch:
    """Decisions for a batch, row-aligned with it, and how long each stage took (milliseconds)."""

    batch: TransactionBatch
    probability: np.ndarray
    model_decision: np.ndarray
    decision: np.ndarray
    reasons: list[list[dict[str, Any]]]
    rules: list[list[str]]
    alert: np.ndarray
    features: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    index: tuple[list[str], dict[str, int]] | None = field(default=None, repr=False)
    """The scorer's feature names and each one's column, so few rows' records need not rebuild it."""
    shadow_version: str | None = None
    """The challenger scored in shadow, when one is; its probability and decision per row follow."""
    shadow_probability: np.ndarray | None = None
    shadow_decision: np.ndarray | None = None
    model_version: str = ""
    """The version of the model that scored the batch (a swap never splits a batch)."""
    routed: np.ndarray | None = None
    """With A/B routing, the rows the challenger (``shadow_version``) decided: there ``probability``,
    ``decision``, reasons and rules are the challenger's, and the ``shadow_*`` columns hold the
    champion's (``model_version``), which did not act. ``None`` when no row was routed."""
    rules_version: str | None = None
    """The version of the rules applied to the batch (one version per batch)."""
    aggregates: np.ndarray | None = None
    """The runtime aggregates the rules declare, as the rules read them (rows × ``aggregate_names``);
    ``None`` when they declare none."""
    aggregate_names: list[str] = field(default_factory=list)
    explained: Explained | None = None
    """Each row's explanation as picked: the explaining model's largest contributions both ways (on
    the ``routed`` rows, the challenger's); ``None`` when no model explains."""
    explainer: Explainer | None = None
    """The words of ``model_version``'s explaining model."""
    shadow_explainer: Explainer | None = None
    """With A/B routing, the words of the challenger's, which explained the ``routed`` rows."""

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def champion_probability(self) -> np.ndarray:
        """The served model's (``model_version``'s) probability of every row, whoever decided it."""
        if self.routed is None or self.shadow_probability is None:
            return self.probability
        return np.where(self.routed, self.shadow_probability, self.probability)

    def columns(self, feature_names: list[str], model_version: str | None = None) -> DecisionColumns:
        """What storage needs of this batch, as columns (see :class:`DecisionColumns`); the version
        stored is the model's that scored it, unless ``model_version`` names another."""
        model_version = model_version or self.model_version
        b = self.batch
        return DecisionColumns(
            transaction_id=b.transaction_id,
            customer_id=b.customer_id,
            timestamp=b.timestamp,
            amount=b.amount,
            decision=self.decision,
            probability=self.probability,
            reasons=self.reasons,
            rules=self.rules,
            features=self.features,
            feature_names=feature_names,
            model_version=model_version,
            latency_ms=dict(self.timings),
            shadow_version=self.shadow_version,
            shadow_probability=self.shadow_probability,
            shadow_decision=self.shadow_decision,
            routed=self.routed,
            rules_version=self.rules_version,
            aggregates=self.aggregates,
            aggregate_names=self.aggregate_names,
            explained=None if self.explained is None else self.explained[:2],
            explainer=self.explainer,
            shadow_explainer=self.shadow_explainer,
        )

    def records(self, feature_names: list[str], model_version: str | None = None) -> list[DecisionRecord]:
        """One storable record per row, carrying the feature vector the decision was made on.

        Passes on the scorer's index of feature names when it has one: for one row, building it
        again cost more than the record.
        """
        index = self.index[1] if self.index is not None and self.index[0] is feature_names else None
        return self.columns(feature_names, model_version).records(index)


@dataclass(frozen=True)
class _Served:
    """What a batch is scored with, swapped in as one: the bundle, its models, the challenger's."""

    bundle: ModelBundle
    models: ServedModels
    shadow: Shadow | None


class Scorer:
    """Scores batches with a model bundle, a feature state and the current rules.

    The models step is the bundle's :class:`~fraudstream.scoring.served.ServedModels`, one path for
    one transaction or ten thousand.

    With a ``challenger`` (another bundle on the same feature set, else :class:`ChallengerError`),
    every batch is also scored by it in shadow, on the same feature rows: its probability and its
    decision (its thresholds, the same rules) ride along in the scored batch to be stored, while the
    answer, the alerts and the rules outcome stay the champion's. With a ``challenger_share`` above
    0, the customers in that share (by a stable hash of the customer id, see :mod:`._routing`) are
    decided by the challenger instead (A/B): their answer, reasons, rules and alerts are its, and the
    champion's probability and decision are stored beside them in the shadow columns.

    ``bands`` (FRAUD_CHALLENGE_BAND, FRAUD_HOLD_BAND) turn the model decisions of the probabilities in
    them into CHALLENGE or HOLD, the challenger's as the champion's, before the rules apply.
    With ``aggregates``, ``rules`` should be its :meth:`~LiveAggregates.rules`: the aggregates the rules
    declare are computed in the features step, and the rules read them beside the features.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        state: FeatureState,
        rules: Callable[[], Any],
        engine: FeatureEngine | None = None,
        *,
        challenger: ModelBundle | None = None,
        challenger_share: float = 0.0,
        bands: ScoreBands = NO_BANDS,
        aggregates: LiveAggregates | None = None,
    ) -> None:
        if not 0.0 <= challenger_share <= 1.0:
            raise ValueError(f"challenger_share must be between 0 and 1, got {challenger_share}")
        self.challenger_share = challenger_share
        """The share of customers the challenger decides (A/B); 0 keeps it in shadow only."""
        self.bands = bands
        """The serving score bands (CHALLENGE, HOLD) applied to every model decision."""
        self.engine = engine or FeatureEngine(bundle.feature_set())
        self.state = state
        self.rules = rules
        self.aggregates = aggregates
        """The runtime aggregates computed online for the rules, when the process computes them."""
        self._descriptions = list(self.engine.feature_set.descriptions)
        self._index = (self.engine.names, {n: i for i, n in enumerate(self.engine.names)})
        self._served = self._prepare(bundle, challenger)

    def use(self, bundle: ModelBundle, *, challenger: ModelBundle | EllipsisType | None = ...) -> None:
        """Serve ``bundle`` from the next batch on, in place, with no restart.

        The models are compiled first, then swapped in as one: a batch takes the served models once,
        when it starts, so each batch is scored (and its decisions carry
        :attr:`ScoredBatch.model_version`) wholly by one model. ``challenger`` replaces the bundle in
        shadow (``None`` drops it); left out, the current challenger stays.

        Raises :class:`ModelSwapError` when ``bundle`` (or the challenger) reads another feature set:
        the feature state's schema follows the feature set, so that takes a restart. The model
        served before keeps serving.
        """
        keep = challenger is ...
        shadow = self.challenger if isinstance(challenger, EllipsisType) else challenger
        mine, theirs = bundle.feature_set(), self.engine.feature_set
        if not mine.computes_same(theirs):
            raise ModelSwapError(
                f"model {bundle.manifest.version} reads another feature set than the served "
                f"{self.version} ({len(mine.names)} features against {len(theirs.names)}); the feature "
                "state's schema follows the feature set, so serving it needs a restart"
            )
        try:
            prepared = self._prepare(bundle, shadow)
        except ChallengerError as e:
            if not keep:
                raise ModelSwapError(str(e)) from e
            prepared = self._prepare(bundle, None)  # a kept challenger the new champion cannot shadow
            log.warning("scoring: challenger dropped on swap: %s", e)
        before = self.version
        self._served = prepared
        log.info("scoring: model swapped in place, %s -> %s", before, bundle.manifest.version)

    def _prepare(self, bundle: ModelBundle, challenger: ModelBundle | None) -> _Served:
        """Everything scoring reads of a bundle (its served models, the challenger's in shadow)."""
        features = self.engine.feature_set
        models = ServedModels(bundle, self._descriptions, features)
        shadow = Shadow(challenger, bundle, self._descriptions, features) if challenger is not None else None
        return _Served(bundle, models, shadow)

    @property
    def bundle(self) -> ModelBundle:
        """The bundle served now."""
        return self._served.bundle

    @property
    def models(self) -> ServedModels:
        """The served bundle's models."""
        return self._served.models

    @property
    def version(self) -> str:
        return self.bundle.manifest.version

    @property
    def challenger(self) -> ModelBundle | None:
        """The bundle scored in shadow beside the served one, or ``None``."""
        shadow = self._served.shadow
        return shadow.bundle if shadow is not None else None

    @property
    def explainer(self) -> str | None:
        """The model whose feature contributions are the decisions' model reasons: the more heavily
        weighted of XGBoost and the logistic model, or ``None`` when the bundle weights neither."""
        return self.models.explainer

    def score(self, batch: TransactionBatch) -> ScoredBatch:
        """Decide every row: features read from the feature state (nothing is recorded there), models,
        rules, decisions with reasons. One model serves the whole batch, even if another is swapped
        in meanwhile (:meth:`use`); the caller (the :class:`~fraudstream.pipeline.decider.Decider`)
        stores the decisions and records the batch."""
        started = time.perf_counter()
        served = self._served
        rules = self.rules()
        X = self.engine.compute(batch, self.state)
        aggregated = self._aggregates(batch, rules)
        return self._decide(served, batch, X, started, rules, aggregated)

    def _aggregates(self, batch: TransactionBatch, rules: Any) -> np.ndarray | None:
        """The runtime aggregates ``rules`` declare, for every row; ``None`` when they declare none."""
        wanted = getattr(rules, "aggregates", None)
        if wanted is None:
            return None
        if self.aggregates is None:
            raise ScoringError(
                f"rules version {rules.version} declares aggregates, and none are computed here"
            )
        return self.aggregates.compute(batch, wanted)

    def _decide(
        self,
        served: _Served,
        batch: TransactionBatch,
        X: np.ndarray,
        started: float,
        rules: Any,
        aggregated: np.ndarray | None = None,
    ) -> ScoredBatch:
        featured = time.perf_counter()
        manifest, models, challenger = served.bundle.manifest, served.models, served.shadow
        probability, by_model, _, explained = models.score(X, explain=True)
        by_model = self.bands.apply(probability, by_model)
        modelled = time.perf_counter()
        aggregate_names = [] if aggregated is None else list(rules.aggregates.names)
        if aggregated is None:
            ruling = rule_columns(batch, X, self.engine.names)
        else:  # the aggregates' names never clash with the features' (the loader refuses it)
            ruling = rule_columns(batch, np.hstack([X, aggregated]), [*self.engine.names, *aggregate_names])
        outcome = rules.apply(ruling, by_model)
        ruled = time.perf_counter()
        routed = None
        if challenger is not None and self.challenger_share > 0:
            routed = routed_rows(batch.customer_id, self.challenger_share)
            routed = routed if routed.any() else None
        shadow = (  # the challenger explains the rows it decides, when it decides some of this batch
            challenger.decide(X, ruling, rules, self.bands, explain=routed is not None)
            if challenger is not None
            else None
        )
        shadowed = time.perf_counter()
        champion = np.asarray(outcome.decision, dtype=object)
        reasoned = champion if routed is None else np.where(routed, "APPROVE", champion)
        n = len(batch)
        model = [[] for _ in range(n)] if explained is None else models.reasons_of(explained, reasoned)
        shadow_probability = shadow_decision = None
        if shadow is not None:
            shadow_probability, shadow_decision = shadow.probability, shadow.outcome.decision
        if routed is not None and shadow is not None and challenger is not None:
            at = np.flatnonzero(routed)
            if shadow.explained is not None:
                theirs = Explained(*(a[at] for a in shadow.explained))
                routed_reasons = challenger.models.reasons_of(theirs, shadow.outcome.decision[at])
                for i, reasons_i in zip(at.tolist(), routed_reasons, strict=True):
                    model[i] = reasons_i
            explained = _routed_explained(routed, shadow.explained, explained)
            probability, shadow_probability = _cross(routed, shadow.probability, probability)
            by_model = np.where(routed, shadow.model_decision, by_model)
            outcome = _routed_outcome(routed, shadow, outcome)
            shadow_decision = np.where(routed, champion, shadow.outcome.decision)
        reasons = _rule_reasons(model, outcome, rules.approving)
        done = time.perf_counter()
        timings = {
            "features": (featured - started) * 1e3,
            "model": (modelled - featured) * 1e3,
            "rules": (ruled - modelled) * 1e3,
            "explain": (done - shadowed) * 1e3,
            "total": (done - started) * 1e3,
        }
        if shadow is not None:
            timings["shadow"] = (shadowed - ruled) * 1e3
        return ScoredBatch(
            batch=batch,
            probability=probability,
            model_decision=by_model,
            decision=np.asarray(outcome.decision, dtype=object),
            reasons=reasons,
            rules=outcome.recorded,
            alert=np.asarray(outcome.alert, dtype=bool),
            features=X,
            timings=timings,
            index=self._index,
            shadow_version=challenger.version if challenger is not None else None,
            shadow_probability=shadow_probability,
            shadow_decision=shadow_decision,
            model_version=manifest.version,
            routed=routed,
            rules_version=rules.version,
            aggregates=aggregated,
            aggregate_names=aggregate_names,
            explained=explained,
            explainer=models.words,
            shadow_explainer=None if routed is None or challenger is None else challenger.models.words,
        )

    def explain(
        self, X: np.ndarray, decision: np.ndarray, contributions: np.ndarray | None = None
    ) -> list[list[dict[str, Any]]]:
        """The model reasons of each row of features ``X`` at ``decision``, from the :attr:`explainer`
        (see :meth:`ServedModels.reasons`); ``contributions`` are the explainer's for ``X`` when
        already at hand."""
        return self.models.reasons(X, decision, contributions)


def _cross(routed: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The acting and the other model's values per row: the challenger's where ``routed``."""
    return np.where(routed, challenger, champion), np.where(routed, champion, challenger)


def _routed_explained(
    routed: np.ndarray, challenger: Explained | None, champion: Explained | None
) -> Explained | None:
    """Each row's explanation by the model that decided it: the challenger's on the ``routed`` rows
    (none picked where a model does not explain)."""
    if challenger is None and champion is None:
        return None
    either = challenger if challenger is not None else champion
    assert either is not None
    empty = Explained(np.full_like(either.columns, -1), *(np.zeros_like(a) for a in either[1:]))
    theirs, mine = challenger or empty, champion or empty
    at = np.asarray(routed, dtype=bool)[:, None]
    return Explained(*(np.where(at, t, m) for t, m in zip(theirs, mine, strict=True)))


def _routed_outcome(routed: np.ndarray, shadow: ShadowOutcome, champion: RuleOutcome) -> RuleOutcome:
    """The rules' outcome that acts: the challenger's on the routed rows, the champion's elsewhere."""
    theirs = shadow.outcome
    flags = routed.tolist()
    return RuleOutcome(
        decision=np.where(routed, theirs.decision, np.asarray(champion.decision, dtype=object)),
        fired=[t if r else c for r, t, c in zip(flags, theirs.fired, champion.fired, strict=True)],
        reasons=[t if r else c for r, t, c in zip(flags, theirs.reasons, champion.reasons, strict=True)],
        alert=np.where(routed, theirs.alert, champion.alert),
        shadow=None
        if champion.shadow is None or theirs.shadow is None
        else [t if r else c for r, t, c in zip(flags, theirs.shadow, champion.shadow, strict=True)],
        snoozed=champion.snoozed,  # the same rules on the same rows: the same snoozed hits
    )


def _rule_reasons(
    out: list[list[dict[str, Any]]], outcome: Any, approving: frozenset[str] = frozenset()
) -> list[list[dict[str, Any]]]:
    """Appends each row's fired rules, with their reasons and direction, to the row's model reasons;
    ``approving`` names the rules whose action is APPROVE."""
    for i, (fired, texts) in enumerate(zip(outcome.fired, outcome.reasons, strict=True)):
        if fired:
            out[i] += [
                {
                    "code": rule,
                    "reason": text,
                    "source": "rules",
                    "direction": rule_direction(rule, approving),
                }
                for rule, text in zip(fired, texts, strict=True)
            ]
    return out
