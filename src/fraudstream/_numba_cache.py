"""numba's on-disk kernel cache, kept in step with the kernels' sources.

numba checks a cached kernel against its own file's time stamp only. A kernel that calls a kernel of
another module (the served models' step calls ``scoring._trees``, the features call ``features.kernels``)
keeps the callee's machine code as it was when the caller was compiled, so after an edit of the
callee's module alone a working copy runs stale code, silently, until the cache files go. The commands
that compute features or scores (``serve``, ``worker``, ``replay``, ``demo``, ``train``, ``evaluate``,
``backtest``) and the test suite call :func:`refresh_stale_kernels` before anything is compiled: it
deletes the package's cached kernels whenever a module that uses numba has changed since they were
written. An installed package never changes, so this costs it one digest of a dozen files per such
command; the others (``report``, ``worker --check``...) skip it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
STAMP = "numba-sources.sha256"


def kernel_sources_digest(package: Path = PACKAGE) -> str:
    """A digest of every module of ``package`` that uses numba, with its path."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        text = path.read_bytes()
        if b"numba" in text:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + text + b"\0")
    return digest.hexdigest()


def refresh_stale_kernels(package: Path = PACKAGE) -> int:
    """Delete ``package``'s cached kernels if a numba module changed since they were written; how many
    files went. Where the package cannot be written (an installed copy), nothing is done."""
    stamp = package / "__pycache__" / STAMP
    digest = kernel_sources_digest(package)
    try:
        if stamp.read_text() == digest:
            return 0
    except OSError:
        pass
    removed = 0
    try:
        for path in [*package.rglob("__pycache__/*.nbi"), *package.rglob("__pycache__/*.nbc")]:
            path.unlink(missing_ok=True)
            removed += 1
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # an installed copy that cannot be written: nothing is edited there either
        pass
    return removed
