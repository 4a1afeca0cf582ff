#!/usr/bin/env bash
# Local Redis, PostgreSQL, single-node Kafka (KRaft), an MLflow tracking server, an S3-compatible object
# store (S3Proxy on a local folder) and a schema registry speaking the Confluent Schema Registry REST API
# (Apicurio Registry) for development and CI.
#
#   services/run.sh start|stop|status [redis|postgres|kafka|mlflow|s3|registry ...]   (make services / ...)
#
# Everything lives under $FRAUD_SERVICES_DIR (default <repo>/.services): data, logs, pid files. `start` is
# idempotent: a service already answering on its port is reported and left alone, whoever started it, and
# `stop` only stops what this script started. Naming services acts on those alone (the fault tests start a
# private Redis or Kafka this way). Ports: FRAUD_SERVICES_{REDIS,POSTGRES,KAFKA,MLFLOW}_PORT and
# FRAUD_SERVICES_KAFKA_CONTROLLER_PORT; FRAUD_SERVICES_KAFKA_LIBS is where the Kafka jars are (default: fetched
# into the state directory); FRAUD_SERVICES_TIMEOUT bounds each wait (seconds). MLflow runs from its own
# virtual environment (FRAUD_SERVICES_MLFLOW_VENV, default .services/mlflow/venv, made with
# FRAUD_SERVICES_PYTHON, default python3) installed from requirements/mlflow-server.lock, so the full mlflow
# package never meets the project's own pins. S3Proxy's jars come from Maven Central like Kafka's
# (FRAUD_SERVICES_S3_LIBS, default fetched into the state directory); it serves FRAUD_SERVICES_S3_PORT with
# the fixed dev credentials below (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), objects under .services/s3/data.
# Apicurio Registry comes from Maven Central too, as the server's own distribution archive unpacked under
# FRAUD_SERVICES_REGISTRY_LIBS (default in the state directory); it serves FRAUD_SERVICES_REGISTRY_PORT, its
# Confluent-compatible API under /apis/ccompat/v7, schemas kept in an H2 file under .services/registry/data so
# their ids survive a restart, as the Kafka messages that carry those ids do.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${FRAUD_SERVICES_DIR:-$ROOT/.services}"
HOST=127.0.0.1
REDIS_PORT="${FRAUD_SERVICES_REDIS_PORT:-6380}"
PG_PORT="${FRAUD_SERVICES_POSTGRES_PORT:-5433}"
KAFKA_PORT="${FRAUD_SERVICES_KAFKA_PORT:-9093}"
KAFKA_CONTROLLER_PORT="${FRAUD_SERVICES_KAFKA_CONTROLLER_PORT:-9094}"
MLFLOW_PORT="${FRAUD_SERVICES_MLFLOW_PORT:-5050}"
S3_PORT="${FRAUD_SERVICES_S3_PORT:-9010}"
REGISTRY_PORT="${FRAUD_SERVICES_REGISTRY_PORT:-8085}"
TIMEOUT="${FRAUD_SERVICES_TIMEOUT:-90}"

PG_USER=fraudstream
PG_PASSWORD=fraudstream
PG_DB=fraudstream
# A fixed cluster id (base64url of "fraudstream-dev1") so formatting is reproducible.
KAFKA_CLUSTER_ID=ZnJhdWRzdHJlYW0tZGV2MQ
KAFKA_POM="$ROOT/services/kafka/pom.xml"

REDIS_DIR="$STATE/redis"
PG_DIR="$STATE/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
KAFKA_DIR="$STATE/kafka"
KAFKA_LIBS="${FRAUD_SERVICES_KAFKA_LIBS:-$KAFKA_DIR/libs}"
MLFLOW_DIR="$STATE/mlflow"
MLFLOW_VENV="${FRAUD_SERVICES_MLFLOW_VENV:-$MLFLOW_DIR/venv}"
MLFLOW_LOCK="$ROOT/requirements/mlflow-server.lock"
S3_DIR="$STATE/s3"
S3_LIBS="${FRAUD_SERVICES_S3_LIBS:-$S3_DIR/libs}"
S3_POM="$ROOT/services/s3proxy/pom.xml"
REGISTRY_DIR="$STATE/registry"
REGISTRY_LIBS="${FRAUD_SERVICES_REGISTRY_LIBS:-$REGISTRY_DIR/libs}"
REGISTRY_POM="$ROOT/services/registry/pom.xml"
# Where the Confluent-compatible API lives: the base URL a Confluent client (or curl) is given.
REGISTRY_API=/apis/ccompat/v7
# Dev-only credentials, fixed so tests and docs can name them; the server listens on loopback only.
S3_ACCESS_KEY=fraudstream
S3_SECRET_KEY=fraudstream-dev-secret

say() { printf '%s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

port_open() {  # port -> 0 when something accepts TCP connections on $HOST:port
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

pid_alive() {  # pidfile word -> 0 when the pid is alive and its command line contains the word
    local pid cmd
    [[ -s "$1" ]] || return 1
    pid="$(head -n1 "$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *"$2"* ]]
}

wait_for() {  # description logfile pid command... -> retry the command until it succeeds; fail on timeout
    local what="$1" log="$2" pid="$3" deadline=$((SECONDS + TIMEOUT))
    shift 3
    until "$@"; do
        [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null || die "$what exited while starting; see $log"
        ((SECONDS < deadline)) || die "$what did not answer within ${TIMEOUT}s; see $log"
        sleep 0.5
    done
}

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"
    fi
}

as_pg() {  # initdb and pg_ctl refuse to run as root: use the postgres OS user then
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

apt_install() {  # packages... (only called when something is missing)
    command -v apt-get >/dev/null || die "missing $*; install them (Debian/Ubuntu: apt-get install $*)"
    say "installing $* (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_bin() {  # newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl, or nothing
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then printf '%s\n' "$dir"; return 0; fi
    done
    return 1
}

ensure_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    pg_bin >/dev/null || missing+=(postgresql)
    if ((${#missing[@]})); then apt_install redis-server postgresql; fi
}

# ---------------------------------------------------------------- Redis

redis_ping() {  # PING over a raw socket, so redis-cli is not needed
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$REDIS_PORT; printf 'PING\r\n' >&3; IFS= read -r l <&3; [[ \$l == +PONG* ]]" \
        2>/dev/null
}

redis_start() {
    if pid_alive "$REDIS_DIR/redis.pid" redis-server; then
        say "redis     running  $HOST:$REDIS_PORT (pid $(head -n1 "$REDIS_DIR/redis.pid"))"; return
    fi
    if port_open "$REDIS_PORT"; then
        say "redis     running  $HOST:$REDIS_PORT (already listening, not started here; left alone)"; return
    fi
    mkdir -p "$REDIS_DIR"
    # The append-only file (fsync once a second, under $REDIS_DIR/appendonlydir) keeps the streams, their
    # consumer groups and the feature state through a restart: a Redis that comes back empty loses
    # accepted transactions and the histories scores are made from. No RDB snapshots on top of it.
    redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$REDIS_DIR/redis.pid" --logfile "$STATE/redis.log" --dir "$REDIS_DIR" \
        --save '' --appendonly yes --appendfsync everysec
    wait_for "Redis on $HOST:$REDIS_PORT" "$STATE/redis.log" "" redis_ping
    say "redis     started  $HOST:$REDIS_PORT (log $STATE/redis.log)"
}

redis_stop() {
    stop_pid redis "$REDIS_DIR/redis.pid" redis-server
}

redis_status() {
    status_line redis "$REDIS_PORT" "$REDIS_DIR/redis.pid" redis-server "$STATE/redis.log"
}

# ---------------------------------------------------------------- PostgreSQL

pg_ready() { "$(pg_bin)/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2; }

pg_init() {
    local bin="$1"
    mkdir -p "$PG_DATA" "$PG_SOCK"
    chmod 700 "$PG_DATA"
    if [[ $EUID -eq 0 ]]; then
        chown -R postgres:postgres "$PG_DIR"
        runuser -u postgres -- test -w "$PG_DATA" \
            || die "the postgres OS user cannot reach $PG_DATA; set FRAUD_SERVICES_DIR to a directory it can (e.g. /tmp/fraudstream-services)"
    fi
    say "postgres  initdb   $PG_DATA"
    # Local socket connections trust (admin tasks below); TCP needs the password.
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >"$STATE/postgres-initdb.log" 2>&1 \
        || die "initdb failed; see $STATE/postgres-initdb.log"
    # A throwaway dev/CI cluster: fsync, synchronous_commit and full_page_writes off trade crash safety
    # (an OS crash can corrupt it; `make services-stop && rm -rf .services` recreates it) for speed.
    cat >>"$PG_DATA/postgresql.conf" <<'CONF'

# --- services/run.sh (dev/CI only) ---
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 128MB
CONF
}

pg_setup_db() {  # role and database, idempotently, over the trusted local socket
    local psql
    psql="$(pg_bin)/psql"
    as_pg "$psql" -X -q -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')
\gexec
SQL
}

pg_start() {
    local bin
    bin="$(pg_bin)"
    if pid_alive "$PG_DATA/postmaster.pid" "$PG_DATA"; then
        pg_setup_db
        say "postgres  running  $HOST:$PG_PORT (pid $(head -n1 "$PG_DATA/postmaster.pid"))"; return
    fi
    if port_open "$PG_PORT"; then
        say "postgres  running  $HOST:$PG_PORT (already listening, not started here; left alone)"; return
    fi
    [[ -s "$PG_DATA/PG_VERSION" ]] || pg_init "$bin"
    touch "$STATE/postgres.log"
    if [[ $EUID -eq 0 ]]; then chown -R postgres:postgres "$PG_DIR" "$STATE/postgres.log"; fi
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$STATE/postgres.log" -s \
        -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=$HOST" start \
        || die "PostgreSQL did not start; see $STATE/postgres.log"
    wait_for "PostgreSQL on $HOST:$PG_PORT" "$STATE/postgres.log" "" pg_ready
    pg_setup_db
    say "postgres  started  $HOST:$PG_PORT (log $STATE/postgres.log)"
}

pg_stop() {
    if pid_alive "$PG_DATA/postmaster.pid" "$PG_DATA"; then
        as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w -s stop
        say "postgres  stopped"
    else
        say "postgres  not running here"
    fi
}

pg_status() {
    status_line postgres "$PG_PORT" "$PG_DATA/postmaster.pid" "$PG_DATA" "$STATE/postgres.log"
}

# ---------------------------------------------------------------- Kafka


kafka_fetch() {  # the pinned jars from Maven Central, again only when the pom changed
    "$ROOT/services/maven-fetch.sh" kafka "$KAFKA_POM" "$KAFKA_LIBS"
}

kafka_config() {
    cat >"$KAFKA_DIR/server.properties" <<PROPS
# Written by services/run.sh on every start: one KRaft node that is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
PROPS
}

# A modest heap; slf4j-simple writes timestamped lines to stderr, which goes to the log file. The per-topic
# and per-group chatter (every test creates topics and groups) is cut to warnings.
KAFKA_JAVA_OPTS=(-Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    -Dorg.slf4j.simpleLogger.showDateTime=true "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS")
for logger in state.change.logger kafka.cluster kafka.log kafka.coordinator org.apache.kafka.storage \
    org.apache.kafka.coordinator org.apache.kafka.controller; do
    KAFKA_JAVA_OPTS+=("-Dorg.slf4j.simpleLogger.log.$logger=warn")
done

kafka_format() {  # once; the StorageTool class moved between Kafka versions
    [[ -s "$KAFKA_DIR/data/meta.properties" ]] && return 0
    local tool=org.apache.kafka.tools.StorageTool
    if unzip -Z1 "$KAFKA_LIBS"/kafka_2.13-*.jar 2>/dev/null | grep -x 'kafka/tools/StorageTool.class' >/dev/null; then
        tool=kafka.tools.StorageTool
    fi
    java "${KAFKA_JAVA_OPTS[@]}" -cp "$KAFKA_LIBS/*" "$tool" format --cluster-id "$KAFKA_CLUSTER_ID" --config "$KAFKA_DIR/server.properties" \
        --ignore-formatted >"$STATE/kafka-format.log" 2>&1 \
        || die "formatting Kafka storage failed; see $STATE/kafka-format.log"
}

kafka_metadata() {  # a real metadata request when the venv has confluent-kafka, else the open port
    local py="$ROOT/.venv/bin/python"
    port_open "$KAFKA_PORT" || return 1
    if [[ -x "$py" ]] && "$py" -c 'import confluent_kafka' 2>/dev/null; then
        "$py" - "$HOST:$KAFKA_PORT" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient

AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0}).list_topics(timeout=3)
PY
    fi
}

kafka_start() {
    # The jars and Java first, whoever runs the broker: the fault tests start a private Kafka from them.
    mkdir -p "$KAFKA_DIR"
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    kafka_fetch
    if pid_alive "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties"; then
        say "kafka     running  $HOST:$KAFKA_PORT (pid $(head -n1 "$KAFKA_DIR/kafka.pid"))"; return
    fi
    if port_open "$KAFKA_PORT"; then
        say "kafka     running  $HOST:$KAFKA_PORT (already listening, not started here; left alone)"; return
    fi
    port_open "$KAFKA_CONTROLLER_PORT" && die "Kafka controller port $KAFKA_CONTROLLER_PORT is taken; set FRAUD_SERVICES_KAFKA_CONTROLLER_PORT"
    kafka_config
    kafka_format
    # Its own session (setsid), so a Ctrl-C in the shell that ran `make services` does not stop it.
    (exec setsid java "${KAFKA_JAVA_OPTS[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties") \
        </dev/null >>"$STATE/kafka.log" 2>&1 &
    printf '%s\n' "$!" >"$KAFKA_DIR/kafka.pid"
    wait_for "Kafka on $HOST:$KAFKA_PORT" "$STATE/kafka.log" "$!" kafka_metadata
    say "kafka     started  $HOST:$KAFKA_PORT (Kafka $(pom_property "$KAFKA_POM" kafka.version), log $STATE/kafka.log)"
}

kafka_stop() {
    stop_pid kafka "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties"
}

kafka_status() {
    status_line kafka "$KAFKA_PORT" "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties" "$STATE/kafka.log"
}

# ---------------------------------------------------------------- MLflow

mlflow_health() {  # GET /health over a raw socket, so curl is not needed
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$MLFLOW_PORT; printf 'GET /health HTTP/1.0\r\nHost: $HOST\r\n\r\n' >&3; IFS= read -r l <&3; [[ \$l == *' 200'* ]]" \
        2>/dev/null
}

mlflow_install() {  # the pinned server into its own venv, again only when the lock file changed
    "$ROOT/services/tool-venv.sh" mlflow "$MLFLOW_VENV" "$MLFLOW_LOCK" mlflow
}

mlflow_start() {
    if pid_alive "$MLFLOW_DIR/mlflow.pid" "$MLFLOW_DIR/mlflow.db"; then
        say "mlflow    running  $HOST:$MLFLOW_PORT (pid $(head -n1 "$MLFLOW_DIR/mlflow.pid"))"; return
    fi
    if port_open "$MLFLOW_PORT"; then
        say "mlflow    running  $HOST:$MLFLOW_PORT (already listening, not started here; left alone)"; return
    fi
    mlflow_install
    mkdir -p "$MLFLOW_DIR/artifacts"
    # Runs and the registry in SQLite, artifacts in a local folder the server proxies (clients upload and
    # download through the REST API, so they need no access to this directory). One worker: a dev server.
    # Its own session (setsid), so its workers are one process group that `stop` ends together.
    (exec env MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true setsid "$MLFLOW_VENV/bin/mlflow" server \
        --backend-store-uri "sqlite:///$MLFLOW_DIR/mlflow.db" --serve-artifacts \
        --artifacts-destination "$MLFLOW_DIR/artifacts" --host "$HOST" --port "$MLFLOW_PORT" --workers 1) \
        </dev/null >>"$STATE/mlflow.log" 2>&1 &
    printf '%s\n' "$!" >"$MLFLOW_DIR/mlflow.pid"
    wait_for "MLflow on $HOST:$MLFLOW_PORT" "$STATE/mlflow.log" "$!" mlflow_health
    say "mlflow    started  $HOST:$MLFLOW_PORT (log $STATE/mlflow.log)"
}

mlflow_stop() {
    stop_pid mlflow "$MLFLOW_DIR/mlflow.pid" "$MLFLOW_DIR/mlflow.db" group
}

mlflow_status() {
    status_line mlflow "$MLFLOW_PORT" "$MLFLOW_DIR/mlflow.pid" "$MLFLOW_DIR/mlflow.db" "$STATE/mlflow.log"
}

# ---------------------------------------------------------------- S3 (S3Proxy)

s3_fetch() {  # the pinned jars from Maven Central, again only when the pom changed
    "$ROOT/services/maven-fetch.sh" s3 "$S3_POM" "$S3_LIBS"
}

s3_config() {
    cat >"$S3_DIR/s3proxy.properties" <<PROPS
# Written by services/run.sh on every start: S3 over HTTP on loopback, buckets as folders under data/.
s3proxy.endpoint=http://$HOST:$S3_PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$S3_ACCESS_KEY
s3proxy.credential=$S3_SECRET_KEY
jclouds.provider=filesystem
jclouds.filesystem.basedir=$S3_DIR/data
PROPS
}

s3_ready() {  # any HTTP answer: S3Proxy answers an unsigned request with 403
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$S3_PORT; printf 'GET / HTTP/1.0\r\nHost: $HOST\r\n\r\n' >&3; IFS= read -r l <&3; [[ \$l == HTTP/* ]]" \
        2>/dev/null
}

s3_start() {
    mkdir -p "$S3_DIR/data"
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    s3_fetch
    if pid_alive "$S3_DIR/s3proxy.pid" "$S3_DIR/s3proxy.properties"; then
        say "s3        running  $HOST:$S3_PORT (pid $(head -n1 "$S3_DIR/s3proxy.pid"))"; return
    fi
    if port_open "$S3_PORT"; then
        say "s3        running  $HOST:$S3_PORT (already listening, not started here; left alone)"; return
    fi
    s3_config
    (exec setsid java -Xms32m -Xmx256m -Djava.awt.headless=true \
        "-Dlogback.configurationFile=$ROOT/services/s3proxy/logback.xml" -cp "$S3_LIBS/*" \
        org.gaul.s3proxy.Main --properties "$S3_DIR/s3proxy.properties") </dev/null >>"$STATE/s3.log" 2>&1 &
    printf '%s\n' "$!" >"$S3_DIR/s3proxy.pid"
    wait_for "S3Proxy on $HOST:$S3_PORT" "$STATE/s3.log" "$!" s3_ready
    say "s3        started  $HOST:$S3_PORT (S3Proxy $(pom_property "$S3_POM" s3proxy.version), objects in $S3_DIR/data, log $STATE/s3.log)"
}

s3_stop() {
    stop_pid s3 "$S3_DIR/s3proxy.pid" "$S3_DIR/s3proxy.properties"
}

s3_status() {
    status_line s3 "$S3_PORT" "$S3_DIR/s3proxy.pid" "$S3_DIR/s3proxy.properties" "$STATE/s3.log"
}

# ---------------------------------------------------------------- Schema registry (Apicurio Registry)

registry_version() { pom_property "$REGISTRY_POM" apicurio.version; }

registry_runner() {  # the server's runnable jar inside the unpacked distribution
    printf '%s\n' "$REGISTRY_LIBS/server/apicurio-registry-app-$(registry_version)-runner.jar"
}

registry_fetch() {  # the pinned distribution from Maven Central, unpacked once per fetch
    "$ROOT/services/maven-fetch.sh" registry "$REGISTRY_POM" "$REGISTRY_LIBS"
    [[ -f "$(registry_runner)" ]] && return 0
    local archive tmp="$REGISTRY_LIBS/server.tmp.$$"
    archive="$REGISTRY_LIBS/apicurio-registry-app-$(registry_version)-all.tar.gz"
    [[ -f "$archive" ]] || die "no $archive after fetching; see $REGISTRY_LIBS.log"
    rm -rf "$tmp" && mkdir -p "$tmp"
    tar -xzf "$archive" -C "$tmp" || { rm -rf "$tmp"; die "could not unpack $archive"; }
    rm -rf "$REGISTRY_LIBS/server"
    mv "$tmp" "$REGISTRY_LIBS/server"
    [[ -f "$(registry_runner)" ]] || die "no $(registry_runner) in $archive"
}

registry_ready() {  # GET the subject list of the Confluent-compatible API over a raw socket: 200 when serving
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$REGISTRY_PORT; printf 'GET $REGISTRY_API/subjects HTTP/1.0\r\nHost: $HOST\r\n\r\n' >&3; IFS= read -r l <&3; [[ \$l == *' 200'* ]]" \
        2>/dev/null
}

registry_start() {
    mkdir -p "$REGISTRY_DIR/data"
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    registry_fetch
    if pid_alive "$REGISTRY_DIR/registry.pid" "$REGISTRY_DIR/data"; then
        say "registry  running  $HOST:$REGISTRY_PORT (pid $(head -n1 "$REGISTRY_DIR/registry.pid"))"; return
    fi
    if port_open "$REGISTRY_PORT"; then
        say "registry  running  $HOST:$REGISTRY_PORT (already listening, not started here; left alone)"; return
    fi
    # In-memory H2 is the server's default; a file keeps the schemas (and so their ids) across restarts.
    # No authentication: a dev server on loopback.
    (exec setsid java -Xms64m -Xmx512m -Djava.awt.headless=true \
        -Dquarkus.http.host="$HOST" -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dquarkus.datasource.jdbc.url="jdbc:h2:file:$REGISTRY_DIR/data/registry" \
        -jar "$(registry_runner)") </dev/null >>"$STATE/registry.log" 2>&1 &
    printf '%s\n' "$!" >"$REGISTRY_DIR/registry.pid"
    wait_for "the schema registry on $HOST:$REGISTRY_PORT" "$STATE/registry.log" "$!" registry_ready
    say "registry  started  $HOST:$REGISTRY_PORT (Apicurio Registry $(registry_version), Confluent API at $REGISTRY_API, log $STATE/registry.log)"
}

registry_stop() {
    stop_pid registry "$REGISTRY_DIR/registry.pid" "$REGISTRY_DIR/data"
}

registry_status() {
    status_line registry "$REGISTRY_PORT" "$REGISTRY_DIR/registry.pid" "$REGISTRY_DIR/data" "$STATE/registry.log"
}

# ---------------------------------------------------------------- shared

pom_property() {  # pom property -> the value of <property> in the pom (the version it pins)
    sed -n "s:.*<$2>\(.*\)</$2>.*:\1:p" "$1"
}

stop_pid() {  # name pidfile word [group] -> SIGTERM, wait up to TIMEOUT, then SIGKILL (its process group: group)
    local name="$1" pidfile="$2" word="$3" group="${4:-}" pid target deadline=$((SECONDS + TIMEOUT))
    if ! pid_alive "$pidfile" "$word"; then
        rm -f "$pidfile"
        printf '%-9s not running here\n' "$name"; return
    fi
    pid="$(head -n1 "$pidfile")"
    target="$pid"
    [[ -z "$group" ]] || target="-$pid"
    kill -TERM -- "$target"
    while kill -0 -- "$target" 2>/dev/null; do
        if ((SECONDS >= deadline)); then kill -KILL -- "$target" 2>/dev/null || true; break; fi
        sleep 0.3
    done
    rm -f "$pidfile"
    printf '%-9s stopped\n' "$name"
}

status_line() {  # name port pidfile word log
    local name="$1" port="$2"
    if pid_alive "$3" "$4"; then
        printf '%-9s running  %s:%s (pid %s, log %s)\n' "$name" "$HOST" "$port" "$(head -n1 "$3")" "$5"
    elif port_open "$port"; then
        printf '%-9s running  %s:%s (not started by services/run.sh)\n' "$name" "$HOST" "$port"
    else
        printf '%-9s stopped  %s:%s\n' "$name" "$HOST" "$port"
    fi
}

print_urls() {
    say ""
    say "export FRAUD_TEST_REDIS_URL=redis://$HOST:$REDIS_PORT/0"
    say "export FRAUD_TEST_DATABASE_URL=postgresql://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB"
    say "export FRAUD_TEST_KAFKA_URL=kafka://$HOST:$KAFKA_PORT"
    say "export FRAUD_TEST_MLFLOW_URL=http://$HOST:$MLFLOW_PORT"
    say "export FRAUD_TEST_S3_ENDPOINT=http://$HOST:$S3_PORT AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY"
    say "export FRAUD_TEST_SCHEMA_REGISTRY_URL=http://$HOST:$REGISTRY_PORT$REGISTRY_API"
}

chosen() {  # "order" services... -> the services named on the command line (all when none), in this order
    local order=($1) names=("${@:2}") name
    for name in "${order[@]}"; do
        if ((${#names[@]} == 0)) || [[ " ${names[*]} " == *" $name "* ]]; then printf '%s\n' "$name"; fi
    done
}

main() {
    local action="${1:-}" name
    shift || true
    declare -A prefix=([redis]=redis [postgres]=pg [kafka]=kafka [mlflow]=mlflow [s3]=s3 [registry]=registry)
    for name in "$@"; do
        [[ -n "${prefix[$name]:-}" ]] || die "unknown service '$name': use redis, postgres, kafka, mlflow, s3 or registry"
    done
    case "$action" in
        start)
            mkdir -p "$STATE"
            ensure_packages
            for name in $(chosen "kafka redis postgres mlflow s3 registry" "$@"); do "${prefix[$name]}_start"; done
            print_urls
            ;;
        stop)
            for name in $(chosen "registry s3 mlflow kafka redis postgres" "$@"); do "${prefix[$name]}_stop"; done
            ;;
        status)
            for name in $(chosen "redis postgres kafka mlflow s3 registry" "$@"); do "${prefix[$name]}_status"; done
            ;;
        *)
            die "usage: $0 start|stop|status [redis|postgres|kafka|mlflow|s3|registry ...]"
            ;;
    esac
}

main "$@"
