#!/usr/bin/env bash
# Fetch the Spark Kafka connector pinned in services/spark/pom.xml, with the jars it adds to PySpark
# (kafka-clients, the token provider, commons-pool2...), from Maven Central into a folder for FRAUD_SPARK_JARS.
#
#   services/spark/fetch.sh [DIR]     (default: $FRAUD_SERVICES_DIR/spark/jars, i.e. .services/spark/jars)
#
# Idempotent: the folder is fetched again only when the pom changed since the last fetch
# (services/maven-fetch.sh). Prints the folder on stdout. Needs Java 17+ to run Spark, and Maven, which is
# installed with apt-get when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${FRAUD_SERVICES_DIR:-$ROOT/.services}"
JARS="${1:-$STATE/spark/jars}"

"$ROOT/services/maven-fetch.sh" spark "$ROOT/services/spark/pom.xml" "$JARS"
printf '%s\n' "$JARS"
