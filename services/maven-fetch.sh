#!/usr/bin/env bash
# Jars pinned by a pom, with their runtime dependencies, fetched from Maven Central into a folder.
#
#   services/maven-fetch.sh NAME POM DIR
#
# Fetched again only when POM changed since the last fetch (its digest is kept in DIR/.pom-sha256); the new
# jars are gathered in a temporary folder and moved in place, so an interrupted fetch never leaves a half
# folder. Maven is installed with apt-get when missing. Maven's output goes to DIR.log. Used for Kafka,
# S3Proxy and the schema registry's distribution archive (services/run.sh) and for the Spark Kafka connector
# (services/spark/fetch.sh).
set -euo pipefail

[[ $# -eq 3 ]] || { printf 'usage: %s NAME POM DIR\n' "$0" >&2; exit 2; }
name="$1" pom="$2" dir="$3"
die() { printf '%s: %s\n' "$name" "$*" >&2; exit 1; }

[[ -f "$pom" ]] || die "no pom $pom"
digest="$(sha256sum "$pom" | cut -d' ' -f1)"
[[ "$(cat "$dir/.pom-sha256" 2>/dev/null)" == "$digest" ]] && exit 0

if ! command -v mvn >/dev/null; then
    command -v apt-get >/dev/null || die "Maven is missing: install it (Debian/Ubuntu: apt-get install maven)"
    sudo=(); [[ $EUID -eq 0 ]] || sudo=(sudo)
    printf '%-9s installing maven (apt-get)\n' "$name" >&2
    "${sudo[@]}" apt-get update -qq >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq maven >/dev/null || die "cannot install Maven: apt-get install maven"
fi
printf '%-9s fetching %s from Maven Central\n' "$name" "${pom#"$PWD/"}" >&2
mkdir -p "$(dirname "$dir")"
tmp="$dir.tmp.$$"
rm -rf "$tmp"
# runtime scope: what the program needs to run, without what a pom marks provided (e.g. Spark, which
# PySpark already has).
mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$dir.log" 2>&1 || { rm -rf "$tmp"; die "fetching with Maven failed; see $dir.log"; }
printf '%s\n' "$digest" >"$tmp/.pom-sha256"
rm -rf "$dir"
mv "$tmp" "$dir"
