"""Whether a Java that Spark 4 runs on is at hand, asked before a session starts: PySpark's own failure
("Java gateway process exited") does not say what to install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_JAVA = 17
INSTALL = (
    f"install Java {MIN_JAVA} or newer (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; "
    "elsewhere e.g. Eclipse Temurin) and put it on PATH or set JAVA_HOME"
)


class JavaError(RuntimeError):
    """No usable Java for Spark; the message says what to install."""


def java_command() -> str | None:
    """The ``java`` Spark will start: ``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def require_java() -> int:
    """The major version of the Java Spark will use; raises :class:`JavaError` saying what to install
    when there is none, or one older than Spark 4 needs."""
    java = java_command()
    if java is None:
        where = "JAVA_HOME has no bin/java" if os.environ.get("JAVA_HOME") else "no java on PATH"
        raise JavaError(f"Spark needs Java, and {where}: {INSTALL}")
    try:
        shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise JavaError(f"cannot run {java} -version ({error}): {INSTALL}") from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown.stderr + shown.stdout)
    if found is None:
        raise JavaError(f"cannot tell the version of {java}: {INSTALL}")
    major = int(found[1]) if found[1] != "1" else int(found[2] or 0)  # "1.8.0" is Java 8
    if major < MIN_JAVA:
        raise JavaError(f"Spark 4 needs Java {MIN_JAVA} or newer, and {java} is Java {major}: {INSTALL}")
    return major
