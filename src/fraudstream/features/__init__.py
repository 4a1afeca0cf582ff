"""Point-in-time features: one declarative spec, one engine for training and serving."""

from fraudstream.features.engine import FeatureEngine, default_feature_set
from fraudstream.features.plan import FeatureSet
from fraudstream.features.spec import PRESETS, SpecError

__all__ = ["PRESETS", "FeatureEngine", "FeatureSet", "SpecError", "default_feature_set"]
