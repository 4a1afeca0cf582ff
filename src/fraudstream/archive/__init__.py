"""The object-store archive: decisions, transactions and labels copied out of the store as date-partitioned
Parquet, to any S3-compatible store (``s3://bucket/prefix``) or a local folder, and read back for training.

- :mod:`.location`: the filesystem an archive URL names, and errors that say what to do;
- :mod:`.writer`: :class:`~.writer.Archiver`, which copies what the store holds in batches, each exactly
  once (watermarks in :mod:`fraudstream.storage.archive`), off the scoring path;
- :mod:`.reader`: a dataset as an Arrow table, or the transactions as a labelled canonical frame.

Nothing here connects or touches a filesystem at import time.
"""

from __future__ import annotations

from fraudstream.archive.location import ArchiveError, Location, is_archive_url, open_location

__all__ = ["ArchiveError", "Location", "is_archive_url", "open_location"]
