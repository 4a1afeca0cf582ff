"""``python -m fraudstream`` runs the command line."""

from fraudstream.cli import app

app()
