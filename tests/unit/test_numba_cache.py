"""Cached kernels go when a numba module changes, and only then; only the commands that compile kernels
look."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudstream import _numba_cache as numba_cache
from fraudstream._numba_cache import STAMP, refresh_stale_kernels
from fraudstream.cli import app

runner = CliRunner()


def _package(root: Path) -> Path:
    (root / "sub" / "__pycache__").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / "kernels.py").write_text("from numba import njit\n")
    (root / "sub" / "caller.py").write_text("import numba\n")
    (root / "api.py").write_text("x = 1\n")
    return root


def _cache(root: Path) -> list[Path]:
    files = [
        root / "__pycache__" / "kernels.f-1.py311.nbi",
        root / "sub" / "__pycache__" / "caller.g-2.py311.nbc",
    ]
    for f in files:
        f.write_bytes(b"machine code")
    return files


def test_a_changed_numba_module_clears_every_cached_kernel(tmp_path: Path) -> None:
    package = _package(tmp_path)
    cached = _cache(package)
    assert refresh_stale_kernels(package) == 2  # no stamp yet: nothing says the cache is current
    assert not any(f.exists() for f in cached) and (package / "__pycache__" / STAMP).exists()
    cached = _cache(package)
    assert refresh_stale_kernels(package) == 0 and all(f.exists() for f in cached)
    (package / "api.py").write_text("x = 2\n")  # no numba in it: the kernels stand
    assert refresh_stale_kernels(package) == 0 and all(f.exists() for f in cached)
    (package / "kernels.py").write_text("from numba import njit\nK = 2\n")  # a callee's module
    assert refresh_stale_kernels(package) == 2 and not any(f.exists() for f in cached)


def test_only_the_commands_that_compile_kernels_check_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    monkeypatch.setattr(numba_cache, "refresh_stale_kernels", lambda: checked.append("checked") or 0)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    for args in (["datasets"], ["worker", "--check"]):
        runner.invoke(app, args)
    assert checked == []
    result = runner.invoke(app, ["replay", str(tmp_path / "missing.parquet")])
    assert result.exit_code != 0 and checked == ["checked"]  # checked before anything else happened
