#!/usr/bin/env bash
# Fetch the Spark Kafka connector pinned in services/spark/pom.xml, with the jars it adds to PySpark
# (kafka-clients, the token provider, commons-pool2...), from Maven Central into a folder for FRAUD_SPARK_JARS.
#
#   services/spark/fetch.sh [DIR]     (default: $FRAUD_SERVICES_DIR/spark/jars, i.e. .services/spark/jars)
#
# Idempotent: the folder is fetched again only when the pom changed since the last fetch (its sha256 is kept
# in DIR/.pom.sha256). Prints the folder on stdout. Needs Maven and Java 17+; Maven is installed with
# apt-get when missing, as services/run.sh does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${FRAUD_SERVICES_DIR:-$ROOT/.services}"
POM="$ROOT/services/spark/pom.xml"
JARS="${1:-$STATE/spark/jars}"

die() { printf 'spark fetch: %s\n' "$*" >&2; exit 1; }

stamp="$(sha256sum "$POM" | cut -d' ' -f1)"
if [[ "$(cat "$JARS/.pom.sha256" 2>/dev/null)" == "$stamp" ]]; then
    printf '%s\n' "$JARS"
    exit 0
fi
if ! command -v mvn >/dev/null; then  # as services/run.sh does for Kafka's jars
    command -v apt-get >/dev/null || die "Maven is missing: install it and run this again"
    sudo=(); [[ $EUID -eq 0 ]] || sudo=(sudo)
    printf 'spark fetch: installing maven (apt-get)\n' >&2
    "${sudo[@]}" apt-get update -qq >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq maven >/dev/null || die "cannot install Maven: apt-get install maven"
fi
mkdir -p "$(dirname "$JARS")"
log="$(dirname "$JARS")/fetch.log"
tmp="$JARS.tmp.$$"
rm -rf "$tmp"
printf 'spark fetch: fetching the Kafka connector from Maven Central into %s\n' "$JARS" >&2
# runtime scope leaves out what the pom marks provided: Spark and Scala, which PySpark already has.
mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$log" 2>&1 || { rm -rf "$tmp"; die "Maven failed; see $log"; }
printf '%s\n' "$stamp" >"$tmp/.pom.sha256"
rm -rf "$JARS"
mv "$tmp" "$JARS"
printf '%s\n' "$JARS"
