#!/usr/bin/env bash
# A short version of issue 3's performance table, and protocol v2's rows, for
# every backend this machine offers: SQLite (always), PostgreSQL (when
# TEST_DATABASE_URL is set to an admin URL) and the in-memory store (when the
# server has the `memory` feature: the ceiling); and the relay (`chat-relay`,
# always: the seed API in memory with no database and no real auth, the
# wire's speed), which runs each seed scenario first, right before the first
# backend's run of it, so the summary can give every row's ratio to it. The
# relay speaks no protocol v2: the v2 and cluster rows are skipped for it,
# with a line saying so. Each scenario gets a fresh
# server on a free loopback port and a fresh database, so no row depends on
# another (a relative target, e.g. v2's closed loop against the seed's, reads
# the other row's figure from this run's results).
#
# The seed scenarios also run against the server built at a baseline commit
# (BENCH_BASELINE, by default the commit before protocol v2), labelled
# `<backend>-before`, each right after the same scenario on this tree, so the
# summary can show whether v2 made any of them worse.
#
#   crates/bench/run.sh            the table (about 17 minutes on SQLite with the
#                                  baseline, 12 per other backend, one for the relay; the
#                                  first run also builds the baseline server, a few minutes)
#   crates/bench/run.sh --smoke    tiny scenarios of every mode on the relay and SQLite
#                                  (about a minute)
#
# Environment:
#   BENCH_BACKENDS           e.g. "sqlite memory" or "relay sqlite" (default: every
#                            available one, the relay included; without relay, no
#                            ratios to it)
#   BENCH_SCENARIOS          e.g. "closed-500 history-200" (default: all)
#   BENCH_DURATION           measured seconds per traffic scenario (default 10)
#   BENCH_THREADS            client runtime threads (default 2)
#   BENCH_SKIP_BUILD         1: use the binaries already built (the baseline's
#                            is built once per commit and kept)
#   BENCH_BASELINE           the baseline commit (default 610ae2a; with --smoke
#                            default none); none: no baseline runs
#   BENCH_BASELINE_BACKENDS  backends run on the baseline too (default sqlite)
#   CARGO_TARGET_DIR         where the release binaries are (default ./target)
#   CLUSTER_WORKERS          HTTP workers of each of the two cluster instances
#                            (default 1: two instances share this machine's cores,
#                            so the pair has as many workers as the single
#                            instance it is compared with)
#   BENCH_KEEP               1: keep the run's scratch directory (server logs)
#
# Every report line goes to $CARGO_TARGET_DIR/bench/results-<time>.jsonl,
# and the summary at the end is `chat-bench --summarize` of that file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SERVER="$TARGET_DIR/release/chat-server"
BENCH="$TARGET_DIR/release/chat-bench"
RELAY="$TARGET_DIR/release/chat-relay"
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
DURATION="${BENCH_DURATION:-10}"
THREADS="${BENCH_THREADS:-2}"
BASELINE="${BENCH_BASELINE:-}"
[ -z "$BASELINE" ] && { [ $SMOKE = 1 ] && BASELINE=none || BASELINE=610ae2a; }
read -r -a BASELINE_BACKENDS <<<"${BENCH_BASELINE_BACKENDS:-sqlite}"
# The rows, in the order they run (each backend runs them all).
if [ $SMOKE = 1 ]; then
    SEED_SCENARIOS=(closed-20 rate-50x10 history-10x100 chat-list-20)
    V2_SCENARIOS=(v2-closed-20 v2-reconnect-20 v2-rate-20x10 v2-rate-20x10-typing v2-paging-5000)
    CLUSTER_SCENARIOS=(cluster-closed-20)
else
    SEED_SCENARIOS=(closed-500 rate-1000x10 rate-5000x1 history-200 chat-list-1000)
    V2_SCENARIOS=(v2-closed-500 v2-reconnect-2000 v2-catchup-100k v2-rate-1000x10
        v2-rate-1000x10-typing v2-paging-1m)
    # PostgreSQL only: two instances with Redis between them, and the
    # single-instance open loop at the cluster rows' rate (10,000 msg/s) that
    # they are compared with.
    CLUSTER_SCENARIOS=(cluster-closed-500 rate-1000x5 cluster-rate-1000x5
        cluster-rate-1000x5-redis-restart)
fi

wanted() {
    [ -z "${BENCH_SCENARIOS:-}" ] && return 0
    [[ " $BENCH_SCENARIOS " == *" $1 "* ]]
}

# Upper bounds, so a wedged server or client cannot hang the run (the
# scenarios that register thousands of users or fill a million messages
# get more, per call).
STEP_TIMEOUT=300
START_TIMEOUT=30

mkdir -p "$TARGET_DIR/bench"
RESULTS="$TARGET_DIR/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/chat-bench.XXXXXX")"
# The baseline: its sources (exported for the build, removed at exit) and
# its binary (kept per commit and features, so it is built once).
BASE_DIR="$TARGET_DIR/bench/baseline"
BASE_SRC=""
BASE_SERVER=""
BASE_LABELS=()

# The server and relay starters: say, start_server, run_scenario, cleanup.
source "$ROOT/crates/bench/servers.sh"

trap cleanup EXIT
trap 'exit 130' INT TERM

# --- which backends -------------------------------------------------------
has_memory_feature() { grep -qE '^memory *=' "$ROOT/Cargo.toml"; }

BACKENDS=()
FEATURES=()
if [ -n "${BENCH_BACKENDS:-}" ]; then
    read -r -a BACKENDS <<<"$BENCH_BACKENDS"
elif [ $SMOKE = 1 ]; then
    BACKENDS=(relay sqlite)
else
    BACKENDS=(relay sqlite)
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
# The relay is not a backend of the server: it runs apart, each seed
# scenario once, before the first backend's run of it (relay_first below).
RELAY_ON=0
SERVER_BACKENDS=()
for backend in "${BACKENDS[@]}"; do
    case "$backend" in
        relay) RELAY_ON=1; continue ;;
        sqlite) ;;
        postgres)
            [ -n "${TEST_DATABASE_URL:-}" ] || { echo "postgres needs TEST_DATABASE_URL" >&2; exit 2; }
            command -v psql >/dev/null || { echo "postgres needs psql to create its databases" >&2; exit 2; }
            FEATURES+=(chat-server/postgres) ;;
        memory)
            has_memory_feature || { echo "the server has no memory feature" >&2; exit 2; }
            FEATURES+=(chat-server/memory) ;;
        *) echo "unknown backend $backend (relay, sqlite, postgres, memory)" >&2; exit 2 ;;
    esac
    SERVER_BACKENDS+=("$backend")
done
BACKENDS=("${SERVER_BACKENDS[@]+"${SERVER_BACKENDS[@]}"}")

# --- build ------------------------------------------------------------------
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building chat-server, chat-bench and chat-relay (release)"
    features="$(IFS=,; echo "${FEATURES[*]+"${FEATURES[*]}"}")"
    (cd "$ROOT" && cargo build --release -p chat-server -p chat-bench --bins \
        ${features:+--features "$features"})
fi
[ -x "$SERVER" ] && [ -x "$BENCH" ] || { echo "missing $SERVER or $BENCH" >&2; exit 2; }
[ $RELAY_ON = 0 ] || [ -x "$RELAY" ] || { echo "missing $RELAY" >&2; exit 2; }

# --- the baseline server ----------------------------------------------------
# The tree at the baseline commit is exported with `git archive` (a read of
# the object store: no worktree is registered, no ref or index touched, so a
# run killed half-way leaves nothing behind in .git), built with its own
# CARGO_TARGET_DIR, and its binary kept under a name that holds the commit
# and the features. `tar -m` dates the files now: cargo compares times, and a
# commit's old dates could make it keep another commit's build.
seed_wanted=0
for name in "${SEED_SCENARIOS[@]}"; do wanted "$name" && seed_wanted=1; done
if [ "$BASELINE" != none ] && [ $seed_wanted = 1 ]; then
    for backend in "${BASELINE_BACKENDS[@]}"; do
        [[ " ${BACKENDS[*]} " == *" $backend "* ]] && BASE_LABELS+=("$backend")
    done
fi
if [ ${#BASE_LABELS[@]} -gt 0 ]; then
    sha="$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE^{commit}")" \
        || { echo "BENCH_BASELINE=$BASELINE is not a commit of $ROOT" >&2; exit 2; }
    base_features=()
    for backend in "${BASE_LABELS[@]}"; do
        case "$backend" in
            postgres) base_features+=(chat-server/postgres) ;;
            memory) base_features+=(chat-server/memory) ;;
        esac
    done
    features="$(IFS=,; echo "${base_features[*]+"${base_features[*]}"}")"
    BASE_SERVER="$BASE_DIR/chat-server-${sha:0:12}${features:+-${features//[\/,]/_}}"
    if [ ! -x "$BASE_SERVER" ]; then
        say "building the baseline server at ${sha:0:12} (release, once per commit)"
        BASE_SRC="$BASE_DIR/src"
        rm -rf "$BASE_SRC" && mkdir -p "$BASE_SRC"
        git -C "$ROOT" archive "$sha" | tar -x -m -C "$BASE_SRC"
        (cd "$BASE_SRC" && CARGO_TARGET_DIR="$BASE_DIR/target" cargo build --release \
            -p chat-server --bin chat-server ${features:+--features "$features"})
        cp "$BASE_DIR/target/release/chat-server" "$BASE_SERVER.tmp"
        mv "$BASE_SERVER.tmp" "$BASE_SERVER"
        rm -rf "$BASE_SRC"
        BASE_SRC=""
    fi
fi
has_baseline() { [[ " ${BASE_LABELS[*]-} " == *" $1 "* ]]; }

# Sockets are file descriptors: the server and the client inherit this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# run_cluster_scenario NAME chat-bench-args...: two instances of this tree
# on one fresh PostgreSQL database, a redis-server of the run's own between
# them (never the shared one), each chat's second participant on the second
# instance. Labelled `postgres`, so its targets can refer to that backend's
# single-instance rows of the same run.
run_cluster_scenario() {
    local name="$1"
    shift
    say "postgres, two instances + Redis (${CLUSTER_WORKERS:-1} worker(s) each): $name"
    if ! command -v redis-server >/dev/null; then
        say "$name SKIPPED: redis-server is not installed (apt-get install redis-server)"
        return 0
    fi
    local dir redis_port i port pids=() urls=() status=0 restarter=""
    dir="$(mktemp -d "$WORK/cluster.XXXX")"
    redis_port="$(free_port)"
    start_redis() {
        redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
            >>"$dir/redis.log" 2>&1 &
        echo $! >"$dir/redis.pid"
    }
    start_redis
    fresh_database postgres "$dir"
    for i in 1 2; do
        port="$(free_port)"
        CHAT_ADDR="127.0.0.1:$port" CHAT_DATA_DIR="$dir" DATABASE_URL="$DB_URL" \
        CHAT_REDIS_URL="redis://127.0.0.1:$redis_port/" \
        CHAT_JWT_SECRET="benchmark secret, at least 32 bytes long" \
        CHAT_WORKERS="${CLUSTER_WORKERS:-1}" \
        RUST_LOG="${RUST_LOG:-warn},chat_api::delivery::sequencer=info,chat_api::delivery::relay=info" \
        CHAT_WS_RATE="${CHAT_WS_RATE:-1000000}" CHAT_WS_BURST="${CHAT_WS_BURST:-1000000}" \
        CHAT_METRICS_ADDR="${CHAT_METRICS_ADDR:-127.0.0.1:0}" \
            "$SERVER" >"$dir/server$i.log" 2>&1 &
        pids+=($!)
        urls+=("http://127.0.0.1:$port")
        for _ in $(seq 1 $((START_TIMEOUT * 10))); do
            port_is_free "$port" || break
            sleep 0.1
        done
    done
    # REDIS_RESTART_AT=N: stop Redis for real N seconds into the run (setup
    # included) and start it again a second later, on the same port.
    if [ -n "${REDIS_RESTART_AT:-}" ]; then
        (sleep "$REDIS_RESTART_AT"; kill -KILL "$(cat "$dir/redis.pid")"
         date +%s.%N >"$dir/redis.stopped"; sleep 1; start_redis
         date +%s.%N >"$dir/redis.started") &
        restarter=$!
    fi
    local out="$WORK/postgres-$name.out"
    timeout --kill-after=10 "$STEP_TIMEOUT" "$BENCH" --url "${urls[0]}" --second-url "${urls[1]}" \
        --server-pid "${pids[0]}" --threads "$THREADS" --name "$name" --label postgres \
        --reference "$RESULTS" "$@" | tee "$out" || status=$?
    if [ "$status" = 0 ] && tail -1 "$out" | grep -q '^{'; then
        tail -1 "$out" >>"$RESULTS"
    else
        printf '{"name":"%s","label":"postgres","error":"chat-bench exited with %s"}\n' \
            "$name" "$status" >>"$RESULTS"
        tail -n 5 "$dir"/server*.log >&2 || true
    fi
    if [ -n "$restarter" ]; then
        wait "$restarter" 2>/dev/null || true
        report_redis_restart "$dir"
    fi
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
}

# After a Redis restart: when each instance had filled its last gap from
# the database, counted from the restart (the servers' own log lines).
report_redis_restart() {
    local dir="$1" stopped started last
    stopped="$(cat "$dir/redis.stopped" 2>/dev/null)" || { say "Redis was not restarted"; return; }
    started="$(cat "$dir/redis.started" 2>/dev/null)"
    last="$(grep -h 'gap filled' "$dir"/server*.log | grep -o '^[0-9T:.-]*Z' | sort | tail -1)"
    local fills down after
    fills="$(cat "$dir"/server*.log | grep -c 'gap filled')"
    down="$(awk -v a="$stopped" -v b="$started" 'BEGIN { printf "%.2f", b - a }')"
    if [ -n "$last" ]; then
        after="$(awk -v a="$started" -v b="$(date -d "$last" +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
        printf '\n  redis restart   down %s s; %s gaps filled from the database; the last %s s after Redis was back\n' \
            "$down" "$fills" "$after" >&2
        printf '# redis restart during %s: down %s s, %s gaps filled from the database, the last %s s after Redis was back\n' \
            "$name" "$down" "$fills" "$after" >>"$RESULTS"
    else
        say "redis restart: no gap needed filling"
    fi
}

# Against the single-instance row of the same run. Sets ARGS.
cluster_args() {
    case "$1" in
        cluster-closed-500) ARGS=(--mode closed --chats 500 --users 101 --duration "$D" --warmup 2s
            --expect 'delivered_per_s>=0.7x@closed-500' --expect 'lost==0' --expect 'duplicated==0'
            --expect 'out_of_order==0' --show 'latency_p99_ms') ;;
        # 10,000 msg/s offered (2,000 sockets at 5 msg/s), every message
        # crossing instances; against the single-instance open loop at the
        # same rate in the same run (rate-1000x5).
        cluster-rate-1000x5) ARGS=(--mode rate --rate 5 --chats 1000 --users 101 --duration "$D" --warmup 2s
            --expect 'latency_p99_ms<=2x@rate-1000x5' --expect 'delivered_ratio>=0.99'
            --expect 'lost==0' --expect 'duplicated==0' --expect 'out_of_order==0') ;;
        # The same with Redis killed and started again mid-run.
        cluster-rate-1000x5-redis-restart) ARGS=(--mode rate --rate 5 --chats 1000 --users 101
            --duration "$D" --warmup 2s --expect 'lost==0' --expect 'duplicated==0'
            --expect 'out_of_order==0' --show 'latency_p99_ms' --show 'delivered_ratio') ;;
        cluster-closed-20) ARGS=(--mode closed --chats 20 --duration 2s --warmup 500ms
            --expect 'lost==0' --expect 'duplicated==0' --expect 'out_of_order==0') ;;
        *) echo "no cluster scenario $1" >&2; exit 2 ;;
    esac
}

# --- the scenarios ------------------------------------------------------------
D="${DURATION}s"

# The seed socket's scenarios (issue 3's table, with issue 12's targets:
# most against the relay's run of the same scenario, which comes first);
# they run on the baseline server too. seed_args NAME BACKEND sets ARGS;
# the targets that differ by backend (PostgreSQL is allowed more) are
# PostgreSQL's for `postgres`, and SQLite's for every other backend (the
# relay only shows the figures it is the reference for).
seed_args() {
    local backend="${2%-before}" closed_ratio=0.6 list_ms=3
    [ "$backend" = postgres ] && { closed_ratio=0.5; list_ms=5; }
    # against_relay TARGET: a target relative to the relay's run; without
    # the relay in this run there is nothing to hold the figure to, so it
    # is only shown.
    against_relay() {
        if [ $RELAY_ON = 1 ]; then echo "--expect=$1"; else echo "--show=${1%%[<>=]*}"; fi
    }
    case "$1" in
        # Users are paired into distinct pairs (101 users make 5,050): setup
        # costs 202 password hashes instead of two per chat.
        closed-500) ARGS=(--mode closed --chats 500 --users 101 --duration "$D" --warmup 2s
            "$(against_relay "delivered_per_s>=${closed_ratio}x@closed-500:relay")" --expect 'lost==0'
            --expect 'duplicated==0' --expect 'out_of_order==0') ;;
        rate-1000x10) ARGS=(--mode rate --rate 10 --chats 1000 --users 101 --duration "$D" --warmup 2s
            --expect 'delivered_ratio>=0.99' "$(against_relay 'latency_p99_ms<=2x@rate-1000x10:relay')"
            --expect 'lost==0') ;;
        # The cluster rows' single-instance reference: 10,000 msg/s offered.
        rate-1000x5) ARGS=(--mode rate --rate 5 --chats 1000 --users 101 --duration "$D" --warmup 2s
            --expect 'delivered_ratio>=0.99' --expect 'lost==0' --show 'latency_p99_ms') ;;
        rate-5000x1) ARGS=(--mode rate --rate 1 --chats 5000 --users 101 --duration "$D" --warmup 2s
            --connect-concurrency 1000
            --expect 'connect_total_s<3' "$(against_relay 'latency_p99_ms<=3x@rate-5000x1:relay')"
            --expect 'server_rss_peak_mb<=200' --expect 'lost==0') ;;
        # Both participants of every chat open it at once (400 sockets, all
        # handshakes in flight together), each owed the whole history: what
        # a chat's two people reconnecting do, and the harder of the two
        # load generators issue 12 compared.
        history-200) ARGS=(--mode history --history 1000 --chats 200 --users 101
            --replay-both --connect-concurrency 400
            --expect 'replay_incomplete==0' "$(against_relay 'replay_p99_ms<=2x@history-200:relay')"
            --expect 'lost==0') ;;
        # 1,001 users: each chat needs its own partner (one chat per pair).
        chat-list-1000) ARGS=(--mode chat-list --chats 1000 --requests 200
            --expect "list_p50_ms<=$list_ms" --expect 'list_errors==0') ;;
        closed-20) ARGS=(--mode closed --chats 20 --duration 2s --warmup 500ms
            --expect 'lost==0' --expect 'duplicated==0' --expect 'out_of_order==0' --expect 'delivered_per_s>0') ;;
        rate-50x10) ARGS=(--mode rate --chats 50 --users 20 --rate 10 --duration 2s --warmup 500ms
            --expect 'lost==0' --expect 'latency_p99_ms<=25') ;;
        history-10x100) ARGS=(--mode history --chats 10 --history 100
            --expect 'replay_incomplete==0' --expect 'lost==0') ;;
        chat-list-20) ARGS=(--mode chat-list --chats 20 --requests 50 --expect 'list_errors==0') ;;
        *) echo "no seed scenario $1" >&2; exit 2 ;;
    esac
}

# Protocol v2's scenarios: one user per socket (a v2 socket carries all of
# its user's chats), so setup registers two users per chat: the rows with
# 1,000 chats hash 4,000 passwords first. Sets ARGS and TIMEOUT.
v2_args() {
    TIMEOUT="$STEP_TIMEOUT"
    case "$1" in
        # Against the seed closed loop of this run (same chats, same
        # sockets; the ack in the echo's place).
        v2-closed-500) ARGS=(--mode v2-closed --chats 500 --duration "$D" --warmup 2s
            --expect 'delivered_per_s>=1x@closed-500' --expect 'lost==0' --expect 'duplicated==0'
            --expect 'out_of_order==0' --expect 'seq_disorder==0') ;;
        # Everyone reconnects at once after missing 20 messages per chat
        # (10 per participant, stored over REST).
        v2-reconnect-2000) TIMEOUT=600
            ARGS=(--mode v2-reconnect --chats 1000 --missed 20 --connect-concurrency 2000
            --expect 'catchup_s<3' --expect 'lost==0' --expect 'duplicated==0'
            --expect 'catchup_incomplete==0' --show 'catchup_p99_ms' --show 'catchup_messages_max') ;;
        # Catch-up costs what was missed, not the chat's length.
        v2-catchup-100k) ARGS=(--mode v2-reconnect --chats 1 --history 100000 --missed 10
            --expect 'catchup_messages_max==10' --show 'catchup_frames_max' --expect 'lost==0'
            --expect 'duplicated==0' --expect 'catchup_incomplete==0') ;;
        # The same load twice, without and with typing; the second is
        # checked against the first.
        v2-rate-1000x10) TIMEOUT=600
            ARGS=(--mode v2-rate --rate 10 --chats 1000 --duration "$D" --warmup 2s
            --show 'latency_p99_ms' --expect 'delivered_ratio>=0.99' --expect 'lost==0') ;;
        v2-rate-1000x10-typing) TIMEOUT=600
            ARGS=(--mode v2-rate --rate 10 --chats 1000 --duration "$D" --warmup 2s
            --typing-interval 3s
            --expect 'latency_p99_ms<=1.2x@v2-rate-1000x10' --expect 'delivered_ratio>=0.99'
            --expect 'lost==0' --show 'typing_events') ;;
        # Pages of 50 before a random seq deep in a chat of 1,000,000.
        v2-paging-1m) TIMEOUT=600
            ARGS=(--mode v2-paging --history 1000000 --requests 1000
            --expect 'page_p50_ms<=2' --show 'page_p99_ms' --expect 'page_errors==0') ;;
        v2-closed-20) ARGS=(--mode v2-closed --chats 20 --duration 2s --warmup 500ms
            --expect 'delivered_per_s>=1x@closed-20' --expect 'lost==0' --expect 'duplicated==0'
            --expect 'seq_disorder==0') ;;
        v2-reconnect-20) ARGS=(--mode v2-reconnect --chats 20 --history 30 --missed 20
            --expect 'catchup_incomplete==0' --expect 'lost==0' --expect 'duplicated==0'
            --expect 'catchup_messages_max==20') ;;
        v2-rate-20x10) ARGS=(--mode v2-rate --chats 20 --rate 10 --duration 2s --warmup 500ms
            --show 'latency_p99_ms' --expect 'lost==0') ;;
        v2-rate-20x10-typing) ARGS=(--mode v2-rate --chats 20 --rate 10 --duration 2s --warmup 500ms
            --typing-interval 500ms --expect 'latency_p99_ms<=1.2x@v2-rate-20x10'
            --expect 'lost==0' --show 'typing_events') ;;
        v2-paging-5000) ARGS=(--mode v2-paging --history 5000 --requests 50
            --expect 'page_errors==0' --show 'page_p50_ms') ;;
        *) echo "no v2 scenario $1" >&2; exit 2 ;;
    esac
}

# The relay runs a seed scenario once, before the first backend's run of it
# (or alone, when it is the only backend): relay_first NAME ARGS...
RELAY_RAN=" "
relay_first() {
    [ $RELAY_ON = 1 ] || return 0
    [[ "$RELAY_RAN" == *" $1 "* ]] && return 0
    RELAY_RAN+="$1 "
    run_scenario relay "$@"
}

# A scenario the relay cannot serve (protocol v2, two instances): said once,
# and recorded so the summary shows it as skipped rather than missing.
RELAY_SKIPPED=" "
relay_skip() {
    [ $RELAY_ON = 1 ] || return 0
    [[ "$RELAY_SKIPPED" == *" $1 "* ]] && return 0
    RELAY_SKIPPED+="$1 "
    say "relay: $1 SKIPPED: $2"
    printf '{"name":"%s","label":"relay","skipped":"%s"}\n' "$1" "$2" >>"$RESULTS"
}
NO_V2="the relay speaks only the seed API (no /ws/v2/, no v2 REST routes)"

{
    echo "# chat-bench $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(nproc) cores, $(uname -r), client threads $THREADS, server workers ${CHAT_WORKERS:-2} (cluster: ${CLUSTER_WORKERS:-1} per instance)"
    if [ ${#BASE_LABELS[@]} -gt 0 ]; then
        echo "# baseline: $BASELINE (${sha:0:12}) as ${BASE_LABELS[*]/%/-before}"
    fi
} >>"$RESULTS"

if [ ${#BACKENDS[@]} = 0 ]; then
    # The relay alone.
    for name in "${SEED_SCENARIOS[@]}"; do
        wanted "$name" || continue
        seed_args "$name" relay
        relay_first "$name" "${ARGS[@]}"
    done
    for name in "${V2_SCENARIOS[@]}"; do
        wanted "$name" && relay_skip "$name" "$NO_V2"
    done
fi
for backend in "${BACKENDS[@]+"${BACKENDS[@]}"}"; do
    # Each seed scenario on this tree, then at once on the baseline: the
    # machine drifts less between the two than over the whole run. The
    # relay's run of it comes first (once per run).
    for name in "${SEED_SCENARIOS[@]}"; do
        wanted "$name" || continue
        seed_args "$name" relay
        relay_first "$name" "${ARGS[@]}"
        seed_args "$name" "$backend"
        run_scenario "$backend" "$name" "${ARGS[@]}"
        has_baseline "$backend" && run_scenario "$backend-before" "$name" "${ARGS[@]}"
    done
    for name in "${V2_SCENARIOS[@]}"; do
        wanted "$name" || continue
        relay_skip "$name" "$NO_V2"
        v2_args "$name"
        SCENARIO_TIMEOUT="$TIMEOUT" run_scenario "$backend" "$name" "${ARGS[@]}"
    done
    [ "$backend" = postgres ] || continue
    for name in "${CLUSTER_SCENARIOS[@]}"; do
        wanted "$name" || continue
        if [[ "$name" != cluster-* ]]; then
            # A single-instance reference row of the cluster's.
            seed_args "$name" relay
            relay_first "$name" "${ARGS[@]}"
            seed_args "$name" "$backend"
            run_scenario "$backend" "$name" "${ARGS[@]}"
            continue
        fi
        relay_skip "$name" "two instances with Redis between them: the relay is one process of its own"
        cluster_args "$name"
        case "$name" in
            # setup (~4 s) + warmup (2 s) + 3 s into the measured window
            *-redis-restart) REDIS_RESTART_AT=9 run_cluster_scenario "$name" "${ARGS[@]}" ;;
            *) run_cluster_scenario "$name" "${ARGS[@]}" ;;
        esac
    done
done

say "summary ($RESULTS)"
grep '^#' "$RESULTS" || true
"$BENCH" --summarize "$RESULTS"
