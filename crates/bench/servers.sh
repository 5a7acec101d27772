# The benchmark's servers, sourced by run.sh and curves.sh: each scenario
# gets a fresh server (or the relay) on a free loopback port and a fresh
# database, and its JSON report line is appended to $RESULTS.
#
# The caller sets: ROOT, WORK (a scratch directory, removed at exit unless
# BENCH_KEEP), RESULTS, SERVER, BENCH, RELAY, THREADS, STEP_TIMEOUT,
# START_TIMEOUT, and for the baseline BASE_SERVER and BASE_SRC; then
# `trap cleanup EXIT`.

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
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    [ -n "$BASE_SRC" ] && rm -rf "$BASE_SRC"
    return 0
}

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

# Starts the relay on a port of its choosing (it prints the address it
# bound); sets SERVER_PID and URL. As many runtime threads as the server
# has HTTP workers.
start_relay() {
    local dir="$1" addr_file="$1/relay.addr"
    "$RELAY" --addr 127.0.0.1:0 --threads "${CHAT_WORKERS:-2}" >"$addr_file" 2>"$SERVER_LOG" &
    SERVER_PID=$!
    for _ in $(seq 1 $((START_TIMEOUT * 10))); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "the relay exited at start:" >&2
            tail -20 "$SERVER_LOG" >&2
            SERVER_PID=""
            return 1
        fi
        # A whole line: the address, then a newline.
        if [ "$(wc -l <"$addr_file")" -ge 1 ]; then
            URL="http://$(head -1 "$addr_file")"
            return 0
        fi
        sleep 0.1
    done
    echo "the relay printed no address within ${START_TIMEOUT}s" >&2
    stop_server
    return 1
}

# Starts the server binary `server` for `backend`; sets SERVER_PID and URL.
# The per-connection message rate limit is lifted: filling 1,000 messages of
# history per chat sends far faster than a person would, and the limit would
# refuse most of them (every other setting is the default).
start_server() {
    local backend="$1" server="$2" dir
    dir="$(mktemp -d "$WORK/$backend.XXXX")"
    SERVER_LOG="$dir/server.log"
    if [ "$backend" = relay ]; then
        start_relay "$dir"
        return
    fi
    fresh_database "$backend" "$dir"
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
    CHAT_METRICS_ADDR="${CHAT_METRICS_ADDR:-127.0.0.1:0}" \
        "$server" >"$dir/server.log" 2>&1 &
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

# run_scenario LABEL NAME chat-bench-args...: LABEL is a backend, or
# BACKEND-before for the baseline server. SCENARIO_TIMEOUT overrides the
# step timeout for one call.
run_scenario() {
    local label="$1" name="$2"
    shift 2
    local backend="${label%-before}" server="$SERVER"
    [ "$backend" != "$label" ] && server="$BASE_SERVER"
    say "$label: $name"
    if ! start_server "$backend" "$server"; then
        printf '{"name":"%s","label":"%s","error":"server did not start"}\n' "$name" "$label" >>"$RESULTS"
        return 0
    fi
    local out="$WORK/$label-$name.out" status=0
    timeout --kill-after=10 "${SCENARIO_TIMEOUT:-$STEP_TIMEOUT}" "$BENCH" --url "$URL" \
        --server-pid "$SERVER_PID" --threads "$THREADS" --name "$name" --label "$label" \
        --reference "$RESULTS" "$@" | tee "$out" || status=$?
    if [ "$status" = 0 ] && tail -1 "$out" | grep -q '^{'; then
        tail -1 "$out" >>"$RESULTS"
    else
        printf '{"name":"%s","label":"%s","error":"chat-bench exited with %s"}\n' \
            "$name" "$label" "$status" >>"$RESULTS"
        echo "server log tail:" >&2
        tail -5 "$SERVER_LOG" >&2 || true
    fi
    stop_server
}
