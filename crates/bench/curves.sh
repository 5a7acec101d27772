#!/usr/bin/env bash
# `make bench-curves`: how each cost grows with the work, not one point of
# it. Runs every point of every curve below on the relay (the wire's speed;
# seed curves only), SQLite and PostgreSQL (when TEST_DATABASE_URL is set),
# each point on a fresh server and database (crates/bench/servers.sh, as
# `make bench`), as a scenario named `curve-<curve>-<x>`; then
# `chat-bench --plot` draws docs/performance/*.png from the results, and
# `chat-bench --summarize` prints every figure.
#
#   sockets    closed loop, 1,000 to 16,000 sockets: delivered msg/s, p99
#   rss        the same sockets at one message per socket every 10 s:
#              server RSS (the slope is the memory per socket)
#   history    seed socket, full history of 100 to 100,000 messages,
#              both participants of 4 chats reconnecting at once: p99
#   catchup    v2 socket, 10 to 10,000 messages missed per chat (4 chats,
#              8 sockets): catch-up p99 (the relay speaks no v2)
#   chat-list  GET /api/chats/ for a user with 10 to 10,000 chats: p50
#
# About 35 minutes with PostgreSQL (the 10,000-chat list registers 10,001
# users: about four minutes of password hashing per database backend). Not
# part of CI.
#
# Environment:
#   CURVE_BACKENDS   e.g. "relay sqlite" (default: relay, sqlite, and
#                    postgres when TEST_DATABASE_URL is set)
#   CURVES           e.g. "history chat-list" (default: all)
#   CURVE_POINTS_<CURVE>  the x values of one curve, e.g. CURVE_POINTS_HISTORY="100 1000"
#   BENCH_THREADS, BENCH_SKIP_BUILD, BENCH_KEEP, CARGO_TARGET_DIR: as run.sh
#   PLOT_DIR         where the PNGs go (default docs/performance)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SERVER="$TARGET_DIR/release/chat-server"
BENCH="$TARGET_DIR/release/chat-bench"
RELAY="$TARGET_DIR/release/chat-relay"
THREADS="${BENCH_THREADS:-2}"
PLOT_DIR="${PLOT_DIR:-$ROOT/docs/performance}"
STEP_TIMEOUT=600
START_TIMEOUT=30
BASE_SERVER=""
BASE_SRC=""

mkdir -p "$TARGET_DIR/bench"
RESULTS="$TARGET_DIR/bench/curves-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/chat-curves.XXXXXX")"
source "$ROOT/crates/bench/servers.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${CURVE_BACKENDS:-}" ]; then
    read -r -a BACKENDS <<<"$CURVE_BACKENDS"
else
    BACKENDS=(relay sqlite)
    if [ -n "${TEST_DATABASE_URL:-}" ]; then
        BACKENDS+=(postgres)
    else
        say "PostgreSQL SKIPPED: TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
    fi
fi
FEATURES=""
for backend in "${BACKENDS[@]}"; do
    case "$backend" in
        relay | sqlite) ;;
        postgres)
            [ -n "${TEST_DATABASE_URL:-}" ] || { echo "postgres needs TEST_DATABASE_URL" >&2; exit 2; }
            command -v psql >/dev/null || { echo "postgres needs psql to create its databases" >&2; exit 2; }
            FEATURES="chat-server/postgres" ;;
        *) echo "unknown backend $backend (relay, sqlite, postgres)" >&2; exit 2 ;;
    esac
done

# The plots need a font before the half hour of runs, not after.
if [ -z "${CHAT_BENCH_FONT:-}" ] && [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    echo "bench-curves needs a font for the plots: apt-get install fonts-dejavu-core (or set CHAT_BENCH_FONT)" >&2
    exit 2
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "building chat-server, chat-bench and chat-relay (release)"
    (cd "$ROOT" && cargo build --release -p chat-server -p chat-bench --bins \
        ${FEATURES:+--features "$FEATURES"})
fi
[ -x "$SERVER" ] && [ -x "$BENCH" ] && [ -x "$RELAY" ] || { echo "missing $SERVER, $BENCH or $RELAY" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

wanted() {
    [ -z "${CURVES:-}" ] && return 0
    [[ " $CURVES " == *" $1 "* ]]
}

# points CURVE DEFAULT...: the x values of CURVE (CURVE_POINTS_<CURVE>
# overrides them).
points() {
    local curve="$1" var
    shift
    var="CURVE_POINTS_$(echo "$curve" | tr 'a-z-' 'A-Z_')"
    echo "${!var:-$*}"
}

# curve_args CURVE X: sets ARGS for one point.
curve_args() {
    local x="$2"
    case "$1" in
        # 182 users make 16,471 distinct pairs: enough for 8,000 chats.
        sockets) ARGS=(--mode closed --chats $((x / 2)) --users 182 --duration 5s --warmup 2s
            --connect-concurrency 1000 --show delivered_per_s --show latency_p99_ms
            --show server_rss_peak_mb --expect 'lost==0' --expect 'duplicated==0') ;;
        rss) ARGS=(--mode rate --rate 0.1 --chats $((x / 2)) --users 182 --duration 8s --warmup 2s
            --connect-concurrency 1000 --show server_rss_peak_mb --show latency_p99_ms
            --expect 'lost==0') ;;
        history) ARGS=(--mode history --chats 4 --history "$x" --replay-both
            --show replay_p99_ms --expect 'replay_incomplete==0' --expect 'lost==0') ;;
        catchup) ARGS=(--mode v2-reconnect --chats 4 --missed "$x"
            --show catchup_p99_ms --expect 'catchup_incomplete==0' --expect 'lost==0'
            --expect 'duplicated==0') ;;
        chat-list) ARGS=(--mode chat-list --chats "$x" --requests 100 --setup-concurrency 8
            --show list_p50_ms --expect 'list_errors==0') ;;
        *) echo "no curve $1" >&2; exit 2 ;;
    esac
}

echo "# chat-bench curves $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$(nproc) cores, $(uname -r), client threads $THREADS, server workers ${CHAT_WORKERS:-2}" >>"$RESULTS"

for curve in sockets rss history catchup chat-list; do
    wanted "$curve" || continue
    case "$curve" in
        sockets | rss) xs="$(points "$curve" 1000 2000 4000 8000 16000)" ;;
        history) xs="$(points "$curve" 100 1000 10000 100000)" ;;
        catchup) xs="$(points "$curve" 10 100 1000 10000)" ;;
        chat-list) xs="$(points "$curve" 10 100 1000 10000)" ;;
    esac
    for x in $xs; do
        for backend in "${BACKENDS[@]}"; do
            if [ "$backend" = relay ] && [ "$curve" = catchup ]; then
                continue # the relay speaks only the seed API
            fi
            curve_args "$curve" "$x"
            run_scenario "$backend" "curve-$curve-$x" "${ARGS[@]}"
        done
    done
done

say "summary ($RESULTS)"
"$BENCH" --summarize "$RESULTS"
say "plots"
"$BENCH" --plot "$RESULTS" --plot-dir "$PLOT_DIR"
