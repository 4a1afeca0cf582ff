"""``fraudstream check``: is every configured dependency reachable, and which version answers."""

from __future__ import annotations

import typer
from rich.table import Table

from fraudstream.commands.common import JsonOpt, emit, settings_with


def check(as_json: JsonOpt = False) -> None:
    """Check the database, broker, feature state and model named by the `FRAUD_*` settings.

    Each is opened and pinged on its own, so one unreachable server does not hide the others.
    Exits 1 when any check fails; `GET /ready` on a running API reports the same checks.
    """
    from fraudstream.checks import check_settings

    checks = check_settings(settings_with())
    table = Table("", "dependency", "where", "detail")
    for c in checks:
        table.add_row("[green]ok[/]" if c.ok else "[red]FAIL[/]", c.name, c.target, c.detail)
    emit({"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]}, as_json, table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
