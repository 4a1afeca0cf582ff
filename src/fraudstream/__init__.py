"""fraudstream: a real-time fraud detection engine.

Transactions come in, point-in-time features are computed from each entity's recent history,
trained models and rules score them, and a decision (APPROVE / FLAG / BLOCK) comes out.
"""

__version__ = "0.1.0"
