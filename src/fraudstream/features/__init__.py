"""Point-in-time features: one declarative definition, one engine for training and serving."""

from fraudstream.features.definitions import DEFAULT_FEATURE_SET, EntitySpec, FeatureSet
from fraudstream.features.engine import FeatureEngine

__all__ = ["DEFAULT_FEATURE_SET", "EntitySpec", "FeatureEngine", "FeatureSet"]
