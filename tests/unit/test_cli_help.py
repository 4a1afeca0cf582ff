"""Every command's --help reads whole at 80 columns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fraudstream.cli import app


def command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from command_paths(sub, (*path, name))


PATHS = list(command_paths(typer.main.get_command(app)))


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "fraudstream")
def test_help_at_80_columns_cuts_nothing(path: tuple[str, ...]) -> None:
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert shown.exit_code == 0, shown.output
    text = shown.output
    cut = re.findall(r"^.*\w(?:\.\.\.|…)$", text, re.MULTILINE)  # a sentence cut to fit, as click does
    assert not cut, cut
    assert "<bool>" not in text
    assert all(len(line) <= 80 for line in text.splitlines()), max(text.splitlines(), key=len)


def test_the_top_level_help_gives_an_example_and_the_docs() -> None:
    text = " ".join(CliRunner().invoke(app, ["--help"], terminal_width=80).output.split())
    assert "fraudstream demo" in text and "fraudstream serve --model" in text and "getting-started.md" in text
