"""The windows train picks when none are given, and the caution beside a thin test window."""

from __future__ import annotations

import numpy as np

from fraudstream.commands.training import fit_windows
from fraudstream.training.metrics import evaluate
from fraudstream.training.report import FEW_FRAUDS, caution

THRESHOLDS = {"flag_threshold": 0.5, "block_threshold": 0.8}


def test_long_data_keeps_the_weekly_defaults_and_given_windows_stand() -> None:
    assert fit_windows(90.0, None, None) == (7.0, 7.0, None)
    assert fit_windows(2.0, 0.5, 0.25) == (0.5, 0.25, None)  # both given: used as they are


def test_short_data_gets_a_gap_and_a_test_window_scaled_to_its_span_and_says_so() -> None:
    gap, test, why = fit_windows(4.0, None, None)
    assert (gap, test) == (0.2, 0.8) and why is not None and "4.00 days" in why and "--test-days" in why
    gap, test, why = fit_windows(4.0, 1.0, None)  # the given gap stands, the test is scaled
    assert (gap, test) == (1.0, 0.8)


def test_a_test_window_with_few_frauds_gets_a_caution_naming_the_threshold() -> None:
    rng = np.random.default_rng(1)
    labels = np.zeros(1000, dtype=bool)
    labels[:4] = True
    thin = evaluate(labels, np.where(labels, 0.9, rng.random(1000) * 0.5), **THRESHOLDS)
    note = caution(thin)
    assert note is not None and "4 frauds" in note and f"fewer than {FEW_FRAUDS}" in note
    labels[:FEW_FRAUDS] = True
    assert caution(evaluate(labels, np.where(labels, 0.9, rng.random(1000) * 0.5), **THRESHOLDS)) is None
