#!/usr/bin/env bash
# A tool pinned by a lock file, in its own virtual environment, so its pins never meet the project's.
#
#   services/tool-venv.sh NAME VENV LOCK EXECUTABLE
#
# Creates VENV (with FRAUD_SERVICES_PYTHON, default python3) and installs LOCK into it, again only when the
# lock file changed since (its digest is kept in VENV/.lock-sha256) or EXECUTABLE is missing from VENV/bin.
# pip's output goes to VENV/../install.log. Used for the MLflow server, Airflow and DVC.
set -euo pipefail

[[ $# -eq 4 ]] || { printf 'usage: %s NAME VENV LOCK EXECUTABLE\n' "$0" >&2; exit 2; }
name="$1" venv="$2" lock="$3" exe="$4"
log="$(dirname "$venv")/install.log"
die() { printf '%s: %s\n' "$name" "$*" >&2; exit 1; }

[[ -f "$lock" ]] || die "no lock file $lock"
digest="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ "$(cat "$venv/.lock-sha256" 2>/dev/null)" == "$digest" && -x "$venv/bin/$exe" ]]; then
    exit 0
fi
printf '%-9s installing into %s (%s)\n' "$name" "$venv" "${lock#"$PWD/"}"
mkdir -p "$(dirname "$venv")"
rm -rf "$venv"
"${FRAUD_SERVICES_PYTHON:-python3}" -m venv "$venv" \
    || die "could not create $venv; install python3-venv or set FRAUD_SERVICES_PYTHON"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock" >"$log" 2>&1 \
    || die "installing from $lock failed; see $log"
printf '%s\n' "$digest" >"$venv/.lock-sha256"
