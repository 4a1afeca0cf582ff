"""The file ``spark-submit`` runs, an entry point beside :mod:`fraudstream.cli`.

``spark_submit.py stream [OPTIONS]`` is ``fraudstream spark stream [OPTIONS]`` (the streaming job);
``spark_submit.py features ARGS`` is ``fraudstream features --engine spark ARGS`` (the backfill).
``python -m fraudstream.spark_submit ...`` runs the same without ``spark-submit``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: spark_submit.py stream [OPTIONS] | spark_submit.py features [OPTIONS]"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the job ``argv[0]`` names with the rest of ``argv`` as its options."""
    args = list(sys.argv[1:] if argv is None else argv)
    job = args[0] if args else ""
    if job == "stream":
        from fraudstream.commands.spark import app as spark

        spark(args=args, prog_name="fraudstream spark")
    elif job == "features":
        from fraudstream.cli import app

        app(["features", "--engine", "spark", *args[1:]], prog_name="fraudstream")
    else:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":  # pragma: no cover - spark-submit's entry
    main()
