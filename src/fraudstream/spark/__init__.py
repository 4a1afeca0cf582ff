"""fraudstream on Apache Spark: point-in-time feature backfill and a Structured Streaming scorer.

Both run the same feature definitions and kernels as the local engine and the API; Spark only decides
where the rows are. Importing this package does not import PySpark: each entry point does, when chosen.
"""
