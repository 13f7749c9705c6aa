#!/usr/bin/env bash
# The docker-compose.yml stack without containers, for machines without Docker (development, CI): the embedded broker
# for Apache Kafka, a real PostgreSQL (pgserver wheel) for the postgres service, then the same steps and services as
# compose, each in that service's environment (scripts/stack_env.py maps only addresses and volumes to this machine):
# migrations, the first model, the consumer, the review page, and the simulator with `up --demo` or `simulate`.
#   bash scripts/stack.sh up [--demo]        start (training the first model if STACK_DIR/models has none)
#   bash scripts/stack.sh simulate [ARGS]    `lineguard simulate ARGS` against the stack, in the foreground
#   bash scripts/stack.sh status | down      what runs | stop everything `up` started
# Settings: STACK_DIR (.stack), STACK_KAFKA_PORT (9092), STACK_METRICS_PORT (9100), STACK_REVIEW_PORT (8080),
# STACK_NORMAL_DIR (normal images; synthetic ones from the simulator's generator if empty), STACK_TRAIN_ARGS
# (lineguard train options; compose's TRAIN_ARGS), FRAMES_PARTITIONS (.env.example). Logs: STACK_DIR/logs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${STACK_PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")
export STACK_DIR=${STACK_DIR:-$ROOT/.stack}
STACK_DIR=$(mkdir -p "$STACK_DIR" && cd "$STACK_DIR" && pwd)
export STACK_KAFKA_PORT=${STACK_KAFKA_PORT:-9092} STACK_METRICS_PORT=${STACK_METRICS_PORT:-9100}
export STACK_REVIEW_PORT=${STACK_REVIEW_PORT:-8080}
PIDS=$STACK_DIR/pids LOGS=$STACK_DIR/logs PGDATA=$STACK_DIR/pgdata
# the services the stack starts, in stop order
SERVICES=(simulate review consumer broker)

in_env() {  # in_env SERVICE COMMAND... | in_env SERVICE --compose-command: in SERVICE's compose environment
    local service=$1
    shift
    [ "$1" = --compose-command ] || set -- -- "$@"
    PATH="$BIN:$PATH" "$PY" "$ROOT/scripts/stack_env.py" "$service" "$@"
}

start() {  # start NAME SERVICE COMMAND... | start NAME SERVICE --compose-command: in the background
    local name=$1 service=$2
    shift 2
    [ "$1" = --compose-command ] || set -- -- "$@"
    # a simple command, not a function, in the background: $! is the service's own pid (stack_env.py execs it)
    PATH="$BIN:$PATH" "$PY" "$ROOT/scripts/stack_env.py" "$service" "$@" > "$LOGS/$name.log" 2>&1 < /dev/null &
    echo $! > "$PIDS/$name.pid"
    echo "started $name (pid $!, log $LOGS/$name.log)"
}

running() {  # running NAME: its pid if it is alive
    local pid
    [ -f "$PIDS/$1.pid" ] && pid=$(cat "$PIDS/$1.pid") && kill -0 "$pid" 2> /dev/null && echo "$pid"
}

wait_http() {  # wait_http URL SECONDS NAME: until URL answers, or fail with the end of NAME's log
    local deadline=$((SECONDS + $2))
    until "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2> /dev/null; do
        if [ $SECONDS -ge $deadline ] || ! running "$3" > /dev/null; then
            echo "error: $3 does not answer on $1; its log ends:" >&2
            tail -20 "$LOGS/$3.log" >&2
            exit 1
        fi
        sleep 0.5
    done
}

postgres_up() {  # a real PostgreSQL (pgserver wheel) in STACK_DIR/pgdata, left running; exports its URL
    STACK_DATABASE_URL=$("$PY" - "$PGDATA" 2>> "$LOGS/postgres.log" << 'EOF_PY'
import sys
import pgserver
uri = pgserver.get_server(sys.argv[1], cleanup_mode=None).get_uri()
print(uri.replace("postgresql://", "postgresql+psycopg://", 1))
EOF_PY
    )
    export STACK_DATABASE_URL
    echo "PostgreSQL in $PGDATA"
}

postgres_down() {  # fast shutdown of the postmaster (SIGINT), by the pid it recorded
    local pid
    [ -f "$PGDATA/postmaster.pid" ] || return 0
    pid=$(head -1 "$PGDATA/postmaster.pid")
    kill -INT "$pid" 2> /dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || { echo "stopped postgres"; return 0; }; sleep 0.2; done
    echo "warning: postgres (pid $pid) still running" >&2
}

first_model() {  # the compose `train` service: train on the normal images when there is no model
    local normal=${STACK_NORMAL_DIR:-$STACK_DIR/normal}
    if [ ! -f "$STACK_DIR/models/model.onnx" ] && [ -z "$(ls -A "$normal" 2> /dev/null)" ]; then
        echo "no normal images in $normal: writing 64 synthetic ones (the simulator's normal frames)"
        "$PY" -c "import sys, pathlib; from training.demo import write_normal_frames as write
write(pathlib.Path(sys.argv[1]), 64, 1)" "$normal"
    fi
    # shellcheck disable=SC2086  # options are words, as compose's TRAIN_ARGS
    in_env train sh "$ROOT/scripts/first-model.sh" "$normal" ${STACK_TRAIN_ARGS:-${TRAIN_ARGS:-}} \
        > "$LOGS/train.log" 2>&1 || { tail -20 "$LOGS/train.log" >&2; exit 1; }
    tail -1 "$LOGS/train.log"
}

up() {
    mkdir -p "$PIDS" "$LOGS" "$STACK_DIR/models" "$STACK_DIR/frames"
    if running consumer > /dev/null; then
        echo "error: the stack in $STACK_DIR is running already (scripts/stack.sh down)" >&2
        exit 1
    fi
    # tests and a developer's shell may have no token: make one, kept with the stack
    if [ -z "${LINEGUARD_REVIEW_TOKEN:-}" ]; then
        # readable by this user only (umask 077 in a subshell), made by the rule the page checks
        [ -f "$STACK_DIR/review-token" ] || (umask 077 && "$BIN/lineguard" review token > "$STACK_DIR/review-token")
        LINEGUARD_REVIEW_TOKEN=$(cat "$STACK_DIR/review-token")
        export LINEGUARD_REVIEW_TOKEN
    fi
    trap '[ $? -eq 0 ] || echo "up failed (logs: $LOGS); bash scripts/stack.sh down stops what it started" >&2' EXIT
    postgres_up
    (umask 077 && echo "$STACK_DATABASE_URL" > "$STACK_DIR/database-url")
    start broker consumer lineguard broker --port "$STACK_KAFKA_PORT" --partitions "${FRAMES_PARTITIONS:-4}"
    in_env migrate --compose-command > "$LOGS/migrate.log" 2>&1 || { tail -20 "$LOGS/migrate.log" >&2; exit 1; }
    tail -1 "$LOGS/migrate.log"
    first_model
    start consumer consumer --compose-command
    start review review --compose-command
    wait_http "http://127.0.0.1:$STACK_REVIEW_PORT/" 60 review
    wait_http "http://127.0.0.1:$STACK_METRICS_PORT/metrics" 180 consumer
    if [ "${1:-}" = --demo ]; then
        start simulate simulate --compose-command
    fi
    echo "up: review page http://127.0.0.1:$STACK_REVIEW_PORT/  metrics http://127.0.0.1:$STACK_METRICS_PORT/metrics"
}

down() {
    local name pid
    for name in "${SERVICES[@]}"; do
        if pid=$(running "$name"); then
            kill -TERM "$pid"
            for _ in $(seq 150); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
            if kill -0 "$pid" 2> /dev/null; then
                echo "warning: $name (pid $pid) ignored SIGTERM for 30 s; killing it" >&2
                kill -KILL "$pid"
            fi
            echo "stopped $name"
        fi
        rm -f "$PIDS/$name.pid"
    done
    postgres_down
}

status() {
    local name pid
    for name in "${SERVICES[@]}"; do
        if pid=$(running "$name"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
    done
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    status) status ;;
    simulate)
        shift
        if [ -f "$STACK_DIR/database-url" ]; then
            STACK_DATABASE_URL=$(cat "$STACK_DIR/database-url")
            export STACK_DATABASE_URL
        fi
        in_env simulate lineguard simulate "$@" ;;
    *) echo "usage: bash scripts/stack.sh up [--demo]|simulate [ARGS]|status|down" >&2; exit 2 ;;
esac
