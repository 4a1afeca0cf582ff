"""Data flows one way (events → features → scores → decisions → storage and alerts): every package sits on
a floor and imports only packages on the floors below it, and no module imports itself round a loop.

Every import counts, wherever it stands: at the top of a module, inside a function, or behind
``TYPE_CHECKING``. A new upward arrow or a new cycle fails here, naming the file and the line.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import fraudstream

SRC = Path(fraudstream.__file__).parent

FLOORS: list[set[str]] = [
    {"events", "expr", "_urls", "_gc", "_malloc", "_kernels", "_numba_cache", "__init__"},
    {"state", "storage"},
    {"features", "brokers", "archive"},
    {"models"},
    {"scoring", "rules", "config"},
    {"pipeline", "datasets", "alerts", "monitoring", "reports", "webhooks"},
    {"training", "worker"},
    {"registry"},
    {"runtime", "checks"},
    {"api", "spark", "dashboard"},
    {"commands"},
    {"cli"},
    {"spark_submit", "__main__"},
]
"""From the ground up: the domain records and the expression language; where events and decisions are
kept; features, transports and the archive; the model bundle; the models step, rules and settings;
the decision pipeline and what watches and reports on it; training and the worker; the registry;
the wiring of a running process; the servers; the command line and its entry points."""

FLOOR = {part: n for n, parts in enumerate(FLOORS) for part in parts}


def part_of(module: str) -> str:
    """``fraudstream.features.plan`` → ``features``; a top-level module is a part of its own."""
    return [*module.split("."), "__init__"][1]


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        if "migrations" in path.parts:  # Alembic's scripts, run by storage alone
            continue
        dotted = ".".join(("fraudstream", *path.relative_to(SRC).with_suffix("").parts))
        yield dotted.removesuffix(".__init__"), path


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every fraudstream module ``module`` imports, with the line: top level, in functions, typing-only."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]  # a module, or a name in one
        else:
            continue
        for name in names:
            if name == "fraudstream" or name.startswith("fraudstream."):
                yield name, node.lineno


def known(name: str, all_modules: set[str]) -> str | None:
    """The module ``name`` is, or is in (``from package import name`` names a module or an attribute)."""
    while name and name not in all_modules:
        name = name.rpartition(".")[0]
    return name or None


def test_every_part_has_a_floor() -> None:
    parts = {part_of(m) for m, _ in modules()}
    assert parts <= FLOOR.keys(), f"parts with no floor in FLOORS: {sorted(parts - FLOOR.keys())}"


def test_no_import_runs_up_the_floors() -> None:
    upward = []
    for module, path in modules():
        mine = part_of(module)
        for name, line in imports(module, path):
            theirs = part_of(name)
            if theirs != mine and FLOOR.get(theirs, -1) >= FLOOR[mine]:
                upward.append(f"{path.relative_to(SRC.parent)}:{line} {mine} → {theirs} ({name})")
    assert upward == [], "imports that run up the floors:\n" + "\n".join(sorted(set(upward)))


def test_no_modules_import_each_other_round_a_loop() -> None:
    found = dict(modules())
    names = set(found)
    graph = {
        module: {target for name, _ in imports(module, path) if (target := known(name, names)) != module}
        for module, path in found.items()
    }
    graph = {module: {t for t in targets if t is not None} for module, targets in graph.items()}
    cycles = [sorted(group) for group in _strongly_connected(graph) if len(group) > 1]
    assert cycles == [], f"modules that import each other, directly or round a loop: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


# --- what importing a part loads, in a fresh interpreter --------------------------------------------

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = ("sklearn", "sqlalchemy", "optuna", "xgboost")


def loaded_by(module: str) -> list[str]:
    """Every module a fresh interpreter has loaded after importing ``module``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=120, check=True
    )
    return list(json.loads(done.stdout))


@pytest.mark.parametrize(
    ("module", "heavy"),
    [
        ("fraudstream.events", HEAVY),
        ("fraudstream.features.engine", HEAVY),
        ("fraudstream.scoring", HEAVY),
        ("fraudstream.models.ensemble", HEAVY),
        ("fraudstream.rules", HEAVY),
    ],
)
def test_the_lower_floors_load_no_heavy_library(module: str, heavy: tuple[str, ...]) -> None:
    """Their own imports stay light: scikit-learn, SQLAlchemy, Optuna and XGBoost load with the parts
    that need them (a bundle's XGBoost model loads XGBoost when it is read)."""
    loaded = loaded_by(module)
    assert module in loaded
    assert not [m for m in loaded if any(m == h or m.startswith(h + ".") for h in heavy)]
