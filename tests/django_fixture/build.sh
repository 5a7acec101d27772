#!/usr/bin/env bash
# Builds a real Django database for tests/import_django.rs: Django (pinned in
# requirements.txt, in a virtual environment of its own under target/) runs
# its migrations and seed.py fills it, passwords hashed by Django itself.
#
# Usage: build.sh <path of the SQLite file to create>
#        build.sh postgres://...   (an empty PostgreSQL database to fill)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="$1"

venv="$root/target/django-venv"
# Tests run in parallel: one of them makes the environment, the others wait.
mkdir -p "$root/target"
exec 9> "$root/target/django-venv.lock"
flock 9
requirements="$here/requirements.txt"
if [ ! -x "$venv/bin/python" ] || [ "$requirements" -nt "$venv/.installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --require-virtualenv -r "$requirements"
    touch "$venv/.installed"
fi

# No .pyc files in the source tree.
export PYTHONDONTWRITEBYTECODE=1
case "$out" in
    postgres://* | postgresql://*) DJANGO_FIXTURE_PG="$out" "$venv/bin/python" "$here/seed.py" ;;
    *) rm -f "$out"; DJANGO_FIXTURE_DB="$out" "$venv/bin/python" "$here/seed.py" ;;
esac
