"""The ``fraudstream`` command line: one Typer app assembling the command groups."""

from __future__ import annotations

from fraudstream.commands import (
    archive,
    check,
    dashboard,
    dead_letters,
    drift,
    features,
    keys,
    models,
    parity,
    report,
    retrain,
    rules,
    serving,
    spark,
    training,
)
from fraudstream.commands.common import command_group

app = command_group(
    "fraudstream: real-time fraud detection with point-in-time features, trained models and rules.",
    epilog="Start with `fraudstream demo` (train, then API, worker, simulator and dashboard on live "
    "traffic). Your own data: `fraudstream train --data export.csv --mapping mapping.yaml --out shop.fsb`, "
    "then `fraudstream serve --model shop.fsb`. `fraudstream COMMAND --help` for each command; the "
    "documentation is in docs/ (getting-started.md first), and `make docs-serve` serves it.",
)


app.command()(serving.demo)
app.command()(training.generate)
app.command()(training.train)
app.command()(training.evaluate)
app.command()(training.backtest)
app.command()(features.features)
app.command()(retrain.retrain)
app.command()(serving.replay)
app.command()(serving.serve)
app.command()(serving.worker)
app.command()(dashboard.dashboard)
app.command()(serving.simulate)
app.command()(training.datasets)
app.command()(check.check)
app.command()(report.report)
app.command()(drift.drift)
app.command()(parity.parity)
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(rules.app, name="rules")
app.add_typer(archive.app, name="archive")
app.add_typer(spark.app, name="spark")
