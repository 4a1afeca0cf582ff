"""Where the time goes: a py-spy profile of a fraudstream process, as shares of its busy samples.

Reads the raw output of ``py-spy record --format raw`` (one line per stack: the frames from the
thread's root to its leaf, then a sample count) and puts each busy sample in one part of the path:
HTTP server, validation, features, model, rules, storage (with the hand-over to a writer process),
JSON, metrics/limits, broker, alerts, the pipeline's own code, start-up (imports, loading a dataset,
a command's report), other. A sample belongs to the innermost frame that names a part, so the
database driver's work under the storage code counts as storage and pydantic's under the route
counts as validation. Samples whose innermost frame waits (a lock, a queue, the event loop's
select) are idle and left out: the shares are of the work the process did, the figure the
benchmarks page's tables carry.

Record a profile with py-spy (``pip install py-spy``), e.g. of a server under load, sampling the
thread that holds the GIL (the work that limits a Python process)::

    py-spy record --format raw --rate 200 --threads --gil --pid PID --duration 20 --output api.txt
    python benchmarks/where_time_goes.py api.txt

``benchmarks/api_throughput.py --profile`` and ``benchmarks/pipeline.py --profile`` record one for
you. Several files (the processes of one run) are summed; ``--by-file`` shows each one's own share.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: The parts of the path, each with the patterns of the frames it owns (function and file). The
#: first part whose pattern matches the innermost matching frame wins, so the order matters where a
#: frame could belong to two (a JSON dump inside storage code is JSON).
PARTS: tuple[tuple[str, str], ...] = (
    ("JSON", r"\((json/|orjson|.*_answer|.*to_json)|^(dumps|loads|.*\.to_json|.*\.model_dump_json) "),
    ("metrics/limits", r"\((prometheus_client/|limits/|fraudstream/api/(metrics|limits)\.py)"),
    ("validation", r"\((pydantic|pydantic_core|fraudstream/events/|fraudstream/api/(bodies|schemas)\.py)"),
    ("features", r"\(fraudstream/(features|state)/"),
    ("model", r"\(fraudstream/(scoring|models)/"),
    ("rules", r"\(fraudstream/(rules|expr)/"),
    ("alerts", r"\(fraudstream/alerts/"),
    (
        "storage",
        r"\((sqlalchemy/|sqlite3/|psycopg|multiprocessing/|fraudstream/storage/|fraudstream/archive/)",
    ),
    ("broker", r"\((redis/|confluent_kafka|kafka/|fraudstream/brokers/|fraudstream/worker/messages)"),
    (
        "HTTP server",
        r"\((uvicorn/|starlette/|fastapi/|httptools|h11/|anyio/|asyncio/|fraudstream/api/)",
    ),
    ("pipeline", r"\(fraudstream/(pipeline|worker)/"),
    ("start-up, loading, reports", r"(<frozen importlib|\(fraudstream/(datasets|training|commands)/)"),
)
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in PARTS)

#: Innermost frames that wait rather than work.
IDLE = re.compile(
    r"^(Condition\.wait|Event\.wait|Queue\.get|SimpleQueue\.get|_wait_for_tstate_lock|select|poll|"
    r"epoll|BaseSelector\.select|EpollSelector\.select|KqueueSelector\.select|Runner\.run|"
    r"_run_once|sleep|wait|accept|recv_into|_recv|Thread\.join|lock\.acquire|Connection\._recv)\b"
)


def py_spy() -> str:
    """The py-spy executable (on PATH or beside this Python), or exit saying how to get it."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit(f"profiling needs py-spy: {sys.executable} -m pip install py-spy (make installs it)")
    return found


def record(pid: int, output: Path, seconds: float | None = None) -> subprocess.Popen[str]:
    """Start recording process ``pid`` into ``output``, for ``seconds`` or until the process exits;
    wait on the result to have the file written. 200 samples a second of the thread holding the GIL
    (``--gil``): Python code runs on one core at a time, so that is the work that limits a Python
    process, and a thread waiting (for a socket, a lock, a queue, a sleep) is left out by py-spy."""
    command = [py_spy(), "record", "--rate", "200", "--format", "raw", "--threads", "--gil"]
    command += ["--pid", str(pid)]
    command += ["--output", str(output)] + ([] if seconds is None else ["--duration", f"{seconds:g}"])
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parts_of(lines: list[str]) -> tuple[Counter[str], int]:
    """The busy samples of one profile per part, and the idle ones."""
    shares: Counter[str] = Counter()
    idle = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        n = int(count)
        if IDLE.match(frames[-1]):
            idle += n
            continue
        shares[_part(frames)] += n
    return shares, idle


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "other"


def table(shares: Counter[str]) -> str:
    """A Markdown table of the shares, largest first."""
    total = sum(shares.values()) or 1
    rows = ["| part | share of busy samples |", "|---|---|"]
    rows += [f"| {name} | {100 * n / total:.0f} % |" for name, n in shares.most_common()]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy raw profiles (--format raw)")
    parser.add_argument("--by-file", action="store_true", help="also each profile's own table")
    args = parser.parse_args()
    total: Counter[str] = Counter()
    for path in args.profiles:
        shares, idle = parts_of(path.read_text().splitlines())
        total += shares
        busy = sum(shares.values())
        print(f"{path}: {busy:,} busy samples, {idle:,} idle")
        if args.by_file and len(args.profiles) > 1:
            print(table(shares), end="\n\n")
    print(table(total))


if __name__ == "__main__":
    main()
