"""What every command shares: consoles, common options, error handling, progress bars."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from fraudstream.config import Settings

# Written to a file or a pipe, a line stays whole (a path is never broken across lines); on a
# terminal, text wraps to its width.
console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
out = Console(soft_wrap=not sys.stdout.isatty())

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Transactions file: canonical (.parquet, .csv, .jsonl), or your own with --mapping; or the "
        "archive (s3://bucket/prefix or its folder, see `fraudstream archive`).",
    ),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", help="A public dataset instead: handbook, fraud_ecom, paysim, sparkov."),
]
PathOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--path",
        metavar="<file>",
        help=(
            "With --dataset: read this file (e.g. the full public one) instead of the sample in the "
            "datasets folder. Repeat in order for several: sparkov fraudTrain.csv fraudTest.csv; "
            "fraud_ecom Fraud_Data.csv [IpAddress_to_Country.csv]."
        ),
    ),
]
MappingOpt = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        metavar="<yaml>",
        help=(
            "With --data: a YAML file naming the columns of your own CSV or Parquet file "
            "(timestamp, customer_id, amount, is_fraud, ...); other columns become `extra.<name>`."
        ),
    ),
]
_skip_bad_rows: ContextVar[bool] = ContextVar("skip_bad_rows", default=False)


def _remember_skip(value: bool) -> bool:
    _skip_bad_rows.set(bool(value))
    return value


SkipBadRowsOpt = Annotated[
    bool,
    typer.Option(
        "--skip-bad-rows",
        callback=_remember_skip,
        help=(
            "Skip the rows of the file that cannot be read (a bad time, number or label, a label time "
            "without a label, a value out of bounds) and count them, rather than refusing the file at "
            "the first; one line then says how many and names the first by their line."
        ),
    ),
]
FeaturesOpt = Annotated[
    str | None,
    typer.Option(
        "--features",
        metavar="<preset|yaml>",
        help=(
            "Feature spec: a preset (handbook, handbook_tuned, paysim, fraud_ecom, sparkov) or your own "
            "YAML file. Default: the dataset's preset, else handbook."
        ),
    ),
]
DatasetsDirOpt = Annotated[
    Path | None,
    typer.Option("--datasets-dir", help="Folder of the public datasets (env FRAUD_DATASETS_DIR)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
ModelsOpt = Annotated[str, typer.Option(help="Comma-separated: xgboost, logistic, isolation_forest.")]
TrialsOpt = Annotated[int, typer.Option(min=0, help="Hyperparameter search trials per model (0: defaults).")]
FoldsOpt = Annotated[
    int,
    typer.Option(
        min=2,
        help="Time-ordered validation folds (expanding window): hyperparameters and the served model are "
        "chosen over them, a blend only when it beats the best single model by more than their spread.",
    ),
]
BlockFprOpt = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="BLOCK threshold: false-positive rate on validation.")
]
FlagFprOpt = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="FLAG threshold: false-positive rate on validation.")
]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="Training threads (env FRAUD_THREADS).")]
"""The options ``train`` and ``retrain`` share, spelled once so that their help says the same."""


def positive(value: float | None) -> float | None:
    """An option's check that a duration or a rate is a finite number above zero: ``--duration -5``
    is refused at once (exit 2, naming the option) rather than starting everything and failing late."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value:g} is not a positive number")
    return value


_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]


def date_option(help_text: str) -> Any:
    return typer.Option(formats=_FORMATS, metavar="<date>", help=f"{help_text} (UTC, YYYY-MM-DD).")


class _Commands(TyperGroup):
    """Lists its commands with the whole first sentence of each one's help, wrapped to the terminal,
    where click cuts it with "..." to fit one line."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def command_group(help_text: str | None = None, epilog: str | None = None) -> typer.Typer:
    """A group of commands whose help reads well at 80 columns: click's plain layout, each option's
    text wrapped beside it, rather than Typer's rich panels, which give the text a narrow column and
    cut it."""
    return typer.Typer(
        cls=_Commands,
        rich_markup_mode=None,
        help=help_text,
        epilog=epilog,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC) if value.tzinfo is None else value


class ServingError(RuntimeError):
    """A server cannot start as asked (for example, its port is taken); the message says what to do."""


def check_port(host: str, port: int) -> None:
    """Fail at once, with the fix, rather than after the start-up's warm-up when uvicorn cannot bind."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise ServingError(
            f"cannot listen on {host!r} ({error.strerror}): set --host or FRAUD_HOST to an address here"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ServingError(
                f"port {port} on {host} is not free ({error.strerror}): pick another with --port"
            ) from None


class _ConsoleWarnings(logging.Handler):
    """The readers' warnings (bad rows skipped, columns missing) on the console in yellow, whatever
    logging is set up: whoever runs a command must see what was left out of its data."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[yellow]{escape(record.getMessage())}[/]")


def show_reader_warnings() -> None:
    """Send the dataset readers' warnings to the console (once, however many commands run)."""
    logger = logging.getLogger("fraudstream.datasets")
    if not any(isinstance(handler, _ConsoleWarnings) for handler in logger.handlers):
        logger.addHandler(_ConsoleWarnings(logging.WARNING))


@contextmanager
def errors() -> Iterator[None]:
    """Known problems become one red line and exit code 2, not a traceback. The readers' warnings
    are shown on the console meanwhile (:func:`show_reader_warnings`)."""
    from fraudstream.brokers import BrokerError
    from fraudstream.datasets.registry import UnknownDatasetError
    from fraudstream.events.errors import SchemaError
    from fraudstream.models.bundle import BundleError
    from fraudstream.rules import RulesError
    from fraudstream.state import StateError
    from fraudstream.storage import StorageError
    from fraudstream.training.models import TrainingError
    from fraudstream.training.tracking import TrackingError

    show_reader_warnings()
    known = (
        SchemaError, BundleError, TrainingError, TrackingError, UnknownDatasetError, FileNotFoundError,
        StorageError, BrokerError, StateError, RulesError, ServingError,
    )  # fmt: skip
    try:
        yield
    except (*known, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def settings_with(datasets_dir: Path | None = None) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"datasets_dir": datasets_dir}) if datasets_dir else settings


@contextmanager
def progress() -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(label, done, total)`` callback for long work. On a terminal: a bar per stage with
    the time spent and, once a step is done, the time left. Elsewhere (a pipe, a log file, CI): one
    line when a stage starts and one when it ends, with its time, so nobody waits blind."""
    if not console.is_terminal:
        yield _progress_lines()
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
    )
    bar = Progress(
        *columns, TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
        transient=True,
    )  # fmt: skip
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done)

    with bar:
        yield update


def _progress_lines() -> Callable[[str, int, int], None]:
    started: dict[str, float] = {}
    finished: set[str] = set()

    def update(label: str, done: int, total: int) -> None:
        if label in finished:
            return
        now = time.monotonic()
        if label not in started:
            started[label] = now
            if done < total:
                console.print(f"{label}: {done:,}/{total:,}")
        if done >= total:
            finished.add(label)
            console.print(f"{label}: {total:,}/{total:,} in {now - started[label]:.1f} s")

    return update


def spec_features(features: str | Path | None = None, dataset: str | None = None) -> Any:
    """The feature set of the spec ``features`` (a file or a preset's name), by default the dataset's
    preset, else ``handbook``; as written, not yet fitted to any data."""
    from fraudstream.datasets.registry import DATASET_PRESETS
    from fraudstream.features import FeatureSet
    from fraudstream.features.spec import DEFAULT_PRESET

    return FeatureSet.load(features or DATASET_PRESETS.get(dataset or "", DEFAULT_PRESET))


def fitted_features(
    batch: Any,
    features: str | Path | None = None,
    dataset: str | None = None,
    fit_until: Any = None,
    fit: bool = True,
) -> Any:
    """The feature set of the spec ``features`` (see :func:`spec_features`) for ``batch``: features
    reading a field the data lacks are left out, and said so; categorical values are learned from the
    rows before ``fit_until`` (the training rows), unless ``fit`` is false (the caller fits them
    elsewhere)."""
    feature_set = spec_features(features, dataset)
    absent = feature_set.absent(batch)
    feature_set, dropped = feature_set.without(absent)
    if dropped:
        console.print(
            f"[yellow]the data has no {', '.join(absent)}: leaving out {len(dropped)} features "
            f"({', '.join(dropped[:6])}{', ...' if len(dropped) > 6 else ''})[/]"
        )
    if fit and not feature_set.fitted:
        rows = np.flatnonzero(batch.timestamp < fit_until.timestamp()) if fit_until is not None else None
        feature_set = feature_set.fit(batch if rows is None or rows.size == 0 else batch.take(rows))
    return feature_set


def read_source(
    settings: Settings,
    data: Path | None,
    dataset: str | None,
    label_delay_days: float,
    paths: list[Path] | None = None,
    mapping: Path | None = None,
    skip_bad_rows: bool | None = None,
) -> tuple[Any, Any]:
    """The transactions a command was pointed at (see
    :func:`~fraudstream.datasets.source.load_source`), and, when ``--data`` is a features file
    (:mod:`fraudstream.features.stored`), the features stored in it (else ``None``).
    ``skip_bad_rows`` is, unless given, the running command's ``--skip-bad-rows``."""
    from fraudstream.datasets.source import load_source
    from fraudstream.features.stored import read_features

    stored = read_features(data) if data is not None and dataset is None and mapping is None else None
    if stored is not None:
        return stored.frame, stored
    skip = skip_bad_rows if skip_bad_rows is not None else skip_bad_rows_asked()
    frame = load_source(
        settings, data, dataset, label_delay_days, paths=paths, mapping=mapping, skip_bad_rows=skip
    )
    return frame, None


def skip_bad_rows_asked() -> bool:
    """Whether the running command was given ``--skip-bad-rows`` (:data:`SkipBadRowsOpt`, whose
    callback records it as each command starts), so the helpers that read its data follow it
    without each command passing it on."""
    return _skip_bad_rows.get()


def featurize(
    frame: Any,
    features: str | Path | None = None,
    dataset: str | None = None,
    fit_until: Any = None,
    stored: Any = None,
) -> Any:
    """The engine of the spec ``features`` (see :func:`fitted_features`) and the frame's features.

    With ``stored`` (a features file read back) and no ``features`` spec asked for, its feature set
    and values are used as they are, not recomputed, and said so; ``--features`` recomputes them."""
    from fraudstream.events.batch import TransactionBatch
    from fraudstream.features import FeatureEngine
    from fraudstream.training.backtest import Featured

    batch = TransactionBatch.from_frame(frame)
    if stored is not None and features is None:
        engine = FeatureEngine(stored.feature_set)
        when = f", categorical values learned before {stored.fit_until:%Y-%m-%d}" if stored.fit_until else ""
        console.print(
            f"using the {len(engine.names)} features stored in the file ({stored.feature_set.describe()}, "
            f"{stored.engine} engine{when}): not recomputing them"
        )
        if fit_until is not None and stored.fit_until is not None and stored.fit_until > fit_until:
            console.print(
                f"[yellow]the stored categorical values were learned from rows up to "
                f"{stored.fit_until:%Y-%m-%d}, after the training end {fit_until:%Y-%m-%d}: recompute "
                f"with `fraudstream features --fit-until {fit_until:%Y-%m-%d}` to keep later rows out[/]"
            )
        return engine, Featured.build(frame, engine, batch, values=stored.values)
    engine = FeatureEngine(fitted_features(batch, features, dataset, fit_until))
    with progress() as bar:
        label = f"compute {len(engine.names)} features of {len(frame):,} transactions"
        bar(label, 0, 1)
        featured = Featured.build(frame, engine, batch)
        bar(label, 1, 1)
    return engine, featured


def emit(payload: dict[str, Any], as_json: bool, table: Any = None) -> None:
    from fraudstream.training.metrics import json_ready

    if as_json:
        sys.stdout.write(json.dumps(json_ready(payload), indent=2) + "\n")
    elif table is not None:
        out.print(table)


class _Stderr(logging.Handler):
    """Writes a record's message to the ``sys.stderr`` of the moment it is logged."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def say_start_notes() -> None:
    """Have a long-running command say at start which rules apply (the rules loader's one line, logged
    at INFO when every rule applies and at WARNING when some do not), on standard error. Set up here,
    at the entry point, since library code leaves logging to the program."""
    notes = logging.getLogger("fraudstream.rules")
    if not any(isinstance(h, _Stderr) for h in notes.handlers):
        notes.addHandler(_Stderr())
        notes.setLevel(logging.INFO)
