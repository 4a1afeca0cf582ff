"""``fraudstream spark``: fraudstream's jobs on Apache Spark."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from fraudstream.commands.common import command_group, console, errors, settings_with

app = command_group(
    "Jobs on Apache Spark: the streaming scorer. Needs fraudstream's spark extra and Java 17 or newer."
)


@app.callback()
def spark() -> None:
    """Jobs on Apache Spark: the streaming scorer. Needs fraudstream's spark extra and Java 17 or newer."""


class Offsets(StrEnum):
    """Where a new checkpoint starts reading the topic."""

    earliest = "earliest"
    latest = "latest"


@app.command()
def stream(
    trigger_seconds: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=86_400.0,
            help="Start a micro-batch every this many seconds (0: as soon as the last one is done).",
        ),
    ] = 1.0,
    max_offsets_per_trigger: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most messages per micro-batch (Spark's maxOffsetsPerTrigger), which the driver decides "
            "in one go: it bounds the driver's memory and a micro-batch's time.",
        ),
    ] = 10_000,
    starting_offsets: Annotated[
        Offsets,
        typer.Option(
            help="Where a new checkpoint starts reading: the topic's oldest messages (none is missed; "
            "those already decided are published again, not decided again) or only new ones. A "
            "checkpoint that exists carries on where it stopped.",
        ),
    ] = Offsets.earliest,
    available_now: Annotated[
        bool,
        typer.Option(
            help="Decide what the topic holds now, in micro-batches, then stop: a catch-up, or a job "
            "run on a schedule."
        ),
    ] = False,
    master: Annotated[
        str | None,
        typer.Option(help="Spark master (e.g. yarn, k8s://https://host:443); default `local[*]`."),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="Where the query keeps its offsets (env FRAUD_SPARK_CHECKPOINT, default "
            "FRAUD_DATA_DIR/spark/checkpoint); a folder, or hdfs://, s3a:// ... on a cluster."
        ),
    ] = None,
) -> None:
    """Score the Kafka transactions topic with Spark Structured Streaming; Ctrl-C or SIGTERM stops.

    Reads the topic the workers read (FRAUD_BROKER_URL=kafka://...) and decides each micro-batch as
    `fraudstream worker` does: feature state in FRAUD_STATE_URL, decisions stored in FRAUD_DATABASE_URL
    and published to the decisions topic, invalid messages dead-lettered. A restart on the same
    checkpoint carries on where the last run stopped, and decides nothing twice. The Kafka connector
    comes from FRAUD_SPARK_JARS (services/spark/fetch.sh), else Spark fetches it from Maven Central.
    """
    from fraudstream.spark._java import JavaError
    from fraudstream.spark.stream import StreamError, StreamOptions, run_stream

    with errors():
        settings = settings_with()
        if checkpoint is not None:
            settings = settings.model_copy(update={"spark_checkpoint": checkpoint})
        options = StreamOptions(
            trigger_seconds=trigger_seconds,
            max_offsets_per_trigger=max_offsets_per_trigger,
            starting_offsets="latest" if starting_offsets is Offsets.latest else "earliest",
            available_now=available_now,
            master=master,
        )
        try:
            stats = run_stream(settings, options, say=lambda line: console.print(line, soft_wrap=True))
        except (StreamError, JavaError) as error:
            console.print(f"[bold red]error:[/] {error}")
            raise typer.Exit(2) from None
    console.print(
        f"spark stream stopped: {stats.decided:,} decided, {stats.duplicates:,} duplicates, "
        f"{stats.dead:,} dead letters"
    )
