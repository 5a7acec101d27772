#!/usr/bin/env bash
# `make bench-import`: import-django's row of the benchmark, apart from
# run.sh's table (its rows are a running server's; this is one command).
# A Django SQLite database of 1,000,000 messages in 1,000 chats is made by
# tests/django_fixture/synthetic.sql (with python3's sqlite3 module, or the
# sqlite3 shell), imported by the release binary into a fresh SQLite
# database under /usr/bin/time, and two rows printed in the style of
# run.sh's summary:
#
#   import-1m  messages_per_s  >= 50000  <figure>  met|MISSED
#   import-1m  peak_rss_mib    show      <figure>
#
# Environment: BENCH_SKIP_BUILD=1 uses the binary already built;
# BENCH_IMPORT_CHATS / BENCH_IMPORT_PER_CHAT change the size (1000 x 1000);
# BENCH_KEEP=1 keeps the scratch directory; CARGO_TARGET_DIR as for cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SERVER="$TARGET_DIR/release/chat-server"
CHATS="${BENCH_IMPORT_CHATS:-1000}"
PER_CHAT="${BENCH_IMPORT_PER_CHAT:-1000}"
TARGET_RATE=50000

[ -x /usr/bin/time ] || { echo "bench-import needs GNU time for the peak RSS: apt-get install time"; exit 1; }
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
	(cd "$ROOT" && cargo build --release --bin chat-server)
fi

SCRATCH="$(mktemp -d)"
# The data directory holds password hashes: the server wants it private.
chmod 700 "$SCRATCH"
[ "${BENCH_KEEP:-0}" = 1 ] && echo "scratch: $SCRATCH" || trap 'rm -rf "$SCRATCH"' EXIT

echo "== generating a Django database: $CHATS chats x $PER_CHAT messages"
sed -e "s/PER_CHAT/$PER_CHAT/g; s/CHATS/$CHATS/g" "$ROOT/tests/django_fixture/synthetic.sql" > "$SCRATCH/source.sql"
if python3 -c 'import sqlite3' 2>/dev/null; then
	python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())' \
		"$SCRATCH/django.sqlite3" "$SCRATCH/source.sql"
elif command -v sqlite3 >/dev/null; then
	sqlite3 "$SCRATCH/django.sqlite3" < "$SCRATCH/source.sql"
else
	echo "bench-import needs python3 (its sqlite3 module) or the sqlite3 shell to make the source"; exit 1
fi

echo "== importing with $SERVER (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
DATABASE_URL="sqlite://$SCRATCH/chat.sqlite3" CHAT_DATA_DIR="$SCRATCH" RUST_LOG=warn \
	/usr/bin/time -v -o "$SCRATCH/time.txt" \
	"$SERVER" import-django --from "sqlite://$SCRATCH/django.sqlite3" | tee "$SCRATCH/report.txt"

rate="$(grep -oE '[0-9]+ messages/s' "$SCRATCH/report.txt" | awk '{ print $1 }')"
rss_kib="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$SCRATCH/time.txt")"
wall="$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$SCRATCH/time.txt")"
verdict=met; [ "$rate" -ge "$TARGET_RATE" ] || verdict=MISSED
echo
LABEL=import-1m; [ $((CHATS * PER_CHAT)) = 1000000 ] || LABEL="import-${CHATS}x${PER_CHAT}"
echo "messages/s over the writing pass (the whole command took $wall); peak RSS of the whole command:"
printf '%-10s %-15s %-9s %10s  %s\n' "$LABEL" "messages_per_s" ">= $TARGET_RATE" "$rate" "$verdict"
printf '%-10s %-15s %-9s %10s\n' "$LABEL" "peak_rss_mib" "show" "$((rss_kib / 1024))"
[ "$verdict" = met ]
