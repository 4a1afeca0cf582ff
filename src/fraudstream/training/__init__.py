"""Training: time-ordered splits, models, calibration, thresholds, evaluation and the model bundle."""
