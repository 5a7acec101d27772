#!/usr/bin/env bash
# schemathesis (PyPI, pinned in requirements.txt, in its own virtual
# environment under target/) against a live release server on a fresh
# SQLite database: every operation of docs/openapi.json with generated
# valid and invalid input, then stateful sequences that follow the
# document's links (register -> log in / start a chat -> send -> page ->
# mark read -> resend). It fails on any 5xx, any status code or body the
# document does not describe, and invalid input that is accepted.
#
# SCHEMATHESIS_EXAMPLES (default 40) cases per operation; SCHEMATHESIS_SEED
# (default 1) makes a failure reproducible; the report is written to
# target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/schemathesis-venv
requirements=tests/schemathesis/requirements.txt
if [ ! -x "$venv/bin/schemathesis" ] || [ "$requirements" -nt "$venv/.installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --require-virtualenv -r "$requirements"
    touch "$venv/.installed"
fi

cargo build --release --bin chat-server
work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
CHAT_ADDR="127.0.0.1:$port" CHAT_DATA_DIR="$work" DATABASE_URL="sqlite://$work/chat.db" \
    CHAT_JWT_SECRET="schemathesis-run-secret-$(date +%s%N)" RUST_LOG=warn CHAT_METRICS_ADDR=off \
    CHAT_LOGIN_FAILURES_PER_ADDRESS=1000000 \
    target/release/chat-server > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    curl -sf "$base/healthz" > /dev/null && break
    sleep 0.1
done
curl -sf "$base/healthz" > /dev/null || { cat "$work/server.log"; echo "the server did not start"; exit 1; }

# The caller every generated request authenticates as, and a chat it is in
# (chat 1), so that chat routes reach past the 404.
post() { curl -sf -H 'Content-Type: application/json' "$@"; }
post -d '{"username": "schema_a", "password": "schemathesis-a"}' "$base/api/auth/register/" > /dev/null
other=$(post -d '{"username": "schema_b", "password": "schemathesis-b"}' "$base/api/auth/register/" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
token=$(post -d '{"username": "schema_a", "password": "schemathesis-a"}' "$base/api/auth/login/" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
post -H "Authorization: Bearer $token" -d "{\"user_id\": $other}" "$base/api/chats/create/" > /dev/null

mkdir -p target/schemathesis
status=0
run_schemathesis() {
    "$venv/bin/schemathesis" run "$base/api/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks all --exclude-checks positive_data_acceptance \
        --max-examples "${SCHEMATHESIS_EXAMPLES:-40}" \
        --seed "${SCHEMATHESIS_SEED:-1}" \
        --workers 2 \
        "$@"
}
# Logging out revokes the token every other request carries: it runs last,
# alone. (Every generated login may fail: the per-address allowance of
# wrong passwords is raised so the stateful phase can still log in;
# password changes fail with a random current password and spend
# schema_a's per-username allowance, answering 429 as documented.)
run_schemathesis --exclude-operation-id logout \
    --report junit --report-dir target/schemathesis || status=$?
run_schemathesis --include-operation-id logout --phases examples,coverage,fuzzing || status=$?
if [ "$status" -ne 0 ]; then
    echo "schemathesis failed; the server's log:"
    tail -50 "$work/server.log"
fi
exit "$status"
