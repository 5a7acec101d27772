#!/usr/bin/env bash
# A short version of issue 3's performance table, for every backend this
# machine offers: SQLite (always), PostgreSQL (when TEST_DATABASE_URL is set
# to an admin URL) and the in-memory store (when the server has the `memory`
# feature: the ceiling). Each scenario gets a fresh server on a free
# loopback port and a fresh database, so no row depends on another.
#
#   crates/bench/run.sh            the table (a few minutes per backend)
#   crates/bench/run.sh --smoke    tiny scenarios on SQLite (seconds)
#
# Environment:
#   BENCH_BACKENDS    e.g. "sqlite memory" (default: every available one)
#   BENCH_SCENARIOS   e.g. "closed-500 history-200" (default: all)
#   BENCH_DURATION    measured seconds per traffic scenario (default 10)
#   BENCH_THREADS     client runtime threads (default 2)
#   BENCH_SKIP_BUILD  1: use the binaries already built
#   CARGO_TARGET_DIR  where the release binaries are (default ./target)
#
# Every report line goes to $CARGO_TARGET_DIR/bench/results-<time>.jsonl,
# and the summary at the end is `chat-bench --summarize` of that file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SERVER="$TARGET_DIR/release/chat-server"
BENCH="$TARGET_DIR/release/chat-bench"
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
DURATION="${BENCH_DURATION:-10}"
THREADS="${BENCH_THREADS:-2}"
# Upper bounds, so a wedged server or client cannot hang the run.
STEP_TIMEOUT=300
START_TIMEOUT=30

mkdir -p "$TARGET_DIR/bench"
RESULTS="$TARGET_DIR/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/chat-bench.XXXXXX")"
SERVER_PID=""
SERVER_LOG=/dev/null
PG_DATABASES=()

say() { printf '\n== %s\n' "$*" >&2; }

# Stops the server (SIGTERM: a graceful stop); a server that does not exit
# cleanly gets its log's tail shown, since its directory is removed at exit.
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        local status=0
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || status=$?
        if [ "$status" != 0 ]; then
            echo "!! the server (pid $SERVER_PID) exited with status $status at stop; its log ends:" >&2
            tail -15 "$SERVER_LOG" >&2 || true
        fi
    fi
    SERVER_PID=""
}

cleanup() {
    stop_server
    for db in "${PG_DATABASES[@]+"${PG_DATABASES[@]}"}"; do
        psql "$TEST_DATABASE_URL" -qAtc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- which backends -------------------------------------------------------
has_memory_feature() { grep -qE '^memory *=' "$ROOT/Cargo.toml"; }

BACKENDS=()
FEATURES=()
if [ $SMOKE = 1 ]; then
    BACKENDS=(sqlite)
elif [ -n "${BENCH_BACKENDS:-}" ]; then
    read -r -a BACKENDS <<<"$BENCH_BACKENDS"
else
    BACKENDS=(sqlite)
    if [ -n "${TEST_DATABASE_URL:-}" ]; then
        BACKENDS+=(postgres)
    else
        say "PostgreSQL SKIPPED: TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
    fi
    if has_memory_feature; then
        BACKENDS+=(memory)
    else
        say "in-memory ceiling SKIPPED: the server has no \`memory\` cargo feature yet"
    fi
fi
for backend in "${BACKENDS[@]}"; do
    case "$backend" in
        sqlite) ;;
        postgres)
            [ -n "${TEST_DATABASE_URL:-}" ] || { echo "postgres needs TEST_DATABASE_URL" >&2; exit 2; }
            command -v psql >/dev/null || { echo "postgres needs psql to create its databases" >&2; exit 2; }
            FEATURES+=(chat-server/postgres) ;;
        memory)
            has_memory_feature || { echo "the server has no memory feature" >&2; exit 2; }
            FEATURES+=(chat-server/memory) ;;
        *) echo "unknown backend $backend (sqlite, postgres, memory)" >&2; exit 2 ;;
    esac
done

# --- build ------------------------------------------------------------------
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building chat-server and chat-bench (release)"
    features="$(IFS=,; echo "${FEATURES[*]+"${FEATURES[*]}"}")"
    (cd "$ROOT" && cargo build --release -p chat-server -p chat-bench --bins \
        ${features:+--features "$features"})
fi
[ -x "$SERVER" ] && [ -x "$BENCH" ] || { echo "missing $SERVER or $BENCH" >&2; exit 2; }

# Sockets are file descriptors: the server and the client inherit this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- one server per scenario -----------------------------------------------
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 30000))
        if port_is_free "$port"; then echo "$port"; return 0; fi
    done
    echo "no free port found" >&2
    return 1
}

# A fresh database URL for the backend, in $DB_URL.
fresh_database() {
    local backend="$1" dir="$2"
    case "$backend" in
        sqlite) DB_URL="sqlite://$dir/chat.sqlite3" ;;
        memory) DB_URL="memory://" ;;
        postgres)
            local name="chat_bench_$(date +%s)_$RANDOM"
            psql "$TEST_DATABASE_URL" -qAtc "CREATE DATABASE \"$name\"" >/dev/null
            PG_DATABASES+=("$name")
            local base="${TEST_DATABASE_URL%%\?*}" query=""
            [ "$base" != "$TEST_DATABASE_URL" ] && query="?${TEST_DATABASE_URL#*\?}"
            DB_URL="${base%/*}/$name$query" ;;
    esac
}

# Starts the server for `backend`; sets SERVER_PID and URL. The
# per-connection message rate limit is lifted: filling 1,000 messages of
# history per chat sends far faster than a person would, and the limit would
# refuse most of them (every other setting is the default).
start_server() {
    local backend="$1" dir
    dir="$(mktemp -d "$WORK/$backend.XXXX")"
    fresh_database "$backend" "$dir"
    SERVER_LOG="$dir/server.log"
    local port
    port="$(free_port)"
    URL="http://127.0.0.1:$port"
    CHAT_ADDR="127.0.0.1:$port" \
    CHAT_DATA_DIR="$dir" \
    DATABASE_URL="$DB_URL" \
    CHAT_JWT_SECRET="benchmark secret, at least 32 bytes long" \
    CHAT_WORKERS="${CHAT_WORKERS:-2}" \
    RUST_LOG="${RUST_LOG:-warn}" \
    CHAT_WS_RATE="${CHAT_WS_RATE:-1000000}" \
    CHAT_WS_BURST="${CHAT_WS_BURST:-1000000}" \
        "$SERVER" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 $((START_TIMEOUT * 10))); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "the server exited at start:" >&2
            tail -20 "$SERVER_LOG" >&2
            SERVER_PID=""
            return 1
        fi
        port_is_free "$port" || return 0
        sleep 0.1
    done
    echo "the server did not listen within ${START_TIMEOUT}s" >&2
    stop_server
    return 1
}

# run_scenario BACKEND NAME chat-bench-args...
run_scenario() {
    local backend="$1" name="$2"
    shift 2
    say "$backend: $name"
    if ! start_server "$backend"; then
        printf '{"name":"%s","label":"%s","error":"server did not start"}\n' "$name" "$backend" >>"$RESULTS"
        return 0
    fi
    local out="$WORK/$backend-$name.out" status=0
    timeout --kill-after=10 "$STEP_TIMEOUT" "$BENCH" --url "$URL" --server-pid "$SERVER_PID" \
        --threads "$THREADS" --name "$name" --label "$backend" "$@" | tee "$out" || status=$?
    if [ "$status" = 0 ] && tail -1 "$out" | grep -q '^{'; then
        tail -1 "$out" >>"$RESULTS"
    else
        printf '{"name":"%s","label":"%s","error":"chat-bench exited with %s"}\n' \
            "$name" "$backend" "$status" >>"$RESULTS"
        echo "server log tail:" >&2
        tail -5 "$SERVER_LOG" >&2 || true
    fi
    stop_server
}

wanted() {
    [ -z "${BENCH_SCENARIOS:-}" ] && return 0
    [[ " $BENCH_SCENARIOS " == *" $1 "* ]]
}

{
    echo "# chat-bench $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(nproc) cores, $(uname -r), client threads $THREADS, server workers ${CHAT_WORKERS:-2}"
} >>"$RESULTS"

D="${DURATION}s"
for backend in "${BACKENDS[@]}"; do
    if [ $SMOKE = 1 ]; then
        run_scenario "$backend" closed-20 --mode closed --chats 20 --duration 2s --warmup 500ms \
            --expect 'lost==0' --expect 'duplicated==0' --expect 'out_of_order==0' --expect 'delivered_per_s>0'
        run_scenario "$backend" rate-50x10 --mode rate --chats 50 --users 20 --rate 10 --duration 2s --warmup 500ms \
            --expect 'lost==0' --expect 'latency_p99_ms<=25'
        run_scenario "$backend" history-10x100 --mode history --chats 10 --history 100 \
            --expect 'replay_incomplete==0' --expect 'lost==0'
        run_scenario "$backend" chat-list-20 --mode chat-list --chats 20 --requests 50 \
            --expect 'list_errors==0'
        continue
    fi
    # Users are paired into distinct pairs (101 users make 5,050): setup
    # costs 202 password hashes instead of two per chat.
    wanted closed-500 && run_scenario "$backend" closed-500 \
        --mode closed --chats 500 --users 101 --duration "$D" --warmup 2s \
        --expect 'delivered_per_s>=27000' --expect 'lost==0' --expect 'duplicated==0' \
        --expect 'out_of_order==0'
    wanted rate-1000x10 && run_scenario "$backend" rate-1000x10 \
        --mode rate --rate 10 --chats 1000 --users 101 --duration "$D" --warmup 2s \
        --expect 'delivered_ratio>=0.99' --expect 'latency_p99_ms<=25' --expect 'lost==0'
    wanted rate-5000x1 && run_scenario "$backend" rate-5000x1 \
        --mode rate --rate 1 --chats 5000 --users 101 --duration "$D" --warmup 2s \
        --connect-concurrency 1000 \
        --expect 'connect_total_s<3' --expect 'latency_p99_ms<=10' \
        --expect 'server_rss_peak_mb<=200' --expect 'lost==0'
    wanted history-200 && run_scenario "$backend" history-200 \
        --mode history --history 1000 --chats 200 --users 101 \
        --expect 'replay_incomplete==0' --expect 'replay_p99_ms<=350' --expect 'lost==0'
    # 1,001 users: each chat needs its own partner (one chat per pair).
    wanted chat-list-1000 && run_scenario "$backend" chat-list-1000 \
        --mode chat-list --chats 1000 --requests 200 \
        --expect 'list_p50_ms<=5' --expect 'list_errors==0'
done

say "summary ($RESULTS)"
grep '^#' "$RESULTS" || true
"$BENCH" --summarize "$RESULTS"
