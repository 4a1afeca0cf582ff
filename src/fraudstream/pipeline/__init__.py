"""The decision path: a batch of transactions → features → models → rules → decisions, stored, recorded
in the feature state and handed over, in one order for every entry point (the API, the workers, the
Spark stream and replay)."""
