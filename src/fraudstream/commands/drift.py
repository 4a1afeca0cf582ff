"""``fraudstream drift``: the drift report over stored decisions, as ``GET /v1/drift`` shows it live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from fraudstream.commands.common import JsonOpt, console, date_option, emit, errors, utc
from fraudstream.config import Settings

if TYPE_CHECKING:
    import numpy as np

    from fraudstream.models.reference import Reference
    from fraudstream.monitoring.drift import DriftReport


def drift_table(report: DriftReport, top: int) -> Table:
    """The report as a table: the score first, then the features, drifting ones first."""
    table = Table(
        title=f"drift of model {report.model_version}: {report.count:,} decisions, PSI threshold "
        f"{report.threshold:g}"
    )
    table.add_column("")
    table.add_column("PSI", justify="right")
    table.add_column("drifting")
    table.add_column("alerts")

    def mark(drifting: bool) -> str:
        return "[bold red]yes[/]" if drifting else "no"

    table.add_row("[bold]score[/]", f"{report.score_psi:.4f}", mark(report.score_drifting), "yes")
    for f in report.features[:top]:
        table.add_row(f.feature, f"{f.psi:.4f}", mark(f.drifting), "yes" if f.important else "")
    if len(report.features) > top:
        table.caption = f"{len(report.features) - top} more features with lower PSI (--top to show them)"
    return table


def drift(
    since: Annotated[
        str,
        typer.Option(
            metavar="<duration>", help="The period, back from --until, by decision time: e.g. 7d, 36h, 2w."
        ),
    ] = "7d",
    until: Annotated[datetime | None, date_option("End of the period (default: now)")] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="The bundle whose reference to compare with (default: FRAUD_MODEL_PATH, served)."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Features shown in the table, most drifted first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Population stability index (PSI) of the fraud score and of every feature over the decisions
    made in the period, against the reference distributions the model bundle stored at training:
    the report `GET /v1/drift` gives for the live window.

    Reads the feature vectors stored with each decision. PSI above FRAUD_DRIFT_PSI_THRESHOLD (0.2 by
    default) counts as drift; below FRAUD_DRIFT_MIN_COUNT decisions there is no PSI. Exits with 1 when
    the period holds no decisions, 2 when the bundle has no reference (retrain it to get one).

    Example: fraudstream drift --since 7d --json
    """
    import numpy as np

    from fraudstream.events.transaction import DECISIONS
    from fraudstream.models.bundle import bundle_feature_set, read_manifest, read_reference
    from fraudstream.models.reference import NO_REFERENCE, Reference
    from fraudstream.monitoring.drift import compare
    from fraudstream.storage import open_store

    with errors():
        try:
            from fraudstream.features.spec import seconds  # lazily: the engine is slow to import

            period = timedelta(seconds=seconds(since))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--since") from None
        settings = Settings()
        path = model or settings.bundle_path
        manifest = read_manifest(path)
        raw = read_reference(path)
        if raw is None:
            console.print(f"[bold red]error:[/] {path}: {NO_REFERENCE} (fraudstream train)")
            raise typer.Exit(2)
        reference = Reference.from_dict(raw)
        end = utc(until) or datetime.now(UTC)
        start = end - period
        with open_store(settings.db_url) as store:
            store.migrate()
            counts = count_stored(store, reference, start, end)
            totals = {d: n for d, n, _ in store.reports.decision_totals(start, end)}
        report = compare(
            reference,
            counts,
            model_version=manifest.version,
            window_seconds=period.total_seconds(),
            threshold=settings.drift_psi_threshold,
            min_count=settings.drift_min_count,
            calendar=bundle_feature_set(manifest, path).calendar_names,
            decided=np.array([totals.get(d, 0) for d in DECISIONS], dtype=np.int64),
        )
        if report.count == 0:
            console.print(f"no decisions between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC")
            raise typer.Exit(1)
        console.print(f"decisions from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC against {path}")
        if report.message:
            console.print(report.message)
        payload = report.to_dict() | {"since": start.isoformat(), "until": end.isoformat()}
        emit(payload, as_json, drift_table(report, top) if report.score_psi is not None else None)


def count_stored(store: Any, reference: Reference, since: datetime, until: datetime) -> np.ndarray:
    """The stored decisions of ``[since, until)`` counted in the reference's bins; a vector stored
    under other feature names contributes the features it shares with the reference (the others count
    as missing)."""
    import numpy as np

    total = np.zeros(reference.expected.shape, dtype=np.int64)
    for names, X, probability in store.decisions.feature_vectors(since, until):
        if names != reference.names:
            at = {n: i for i, n in enumerate(names)}
            aligned = np.full((len(X), len(reference.names)), np.nan)
            for j, name in enumerate(reference.names):
                if name in at:
                    aligned[:, j] = X[:, at[name]]
            X = aligned
        total += reference.counts(X, probability)
    return total
