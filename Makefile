# The chat server's everyday commands. `make lint` is exactly what CI lints with.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_INCREMENTAL ?= 0

CARGO ?= cargo
PG_FEATURES := --features postgres

.PHONY: help run build release lint layering test test-sqlite test-postgres test-memory test-browser test-schemathesis test-slow clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

run: ## Start the server: SQLite in ./data, migrations applied, 127.0.0.1:8000 (metrics: 127.0.0.1:9180/metrics)
	$(CARGO) run --release --bin chat-server

build: ## Debug build of everything
	$(CARGO) build --workspace --all-targets

release: ## Optimised server binary at target/release/chat-server
	$(CARGO) build --release --bin chat-server

lint: layering ## Formatting check and clippy (warnings denied) on every build that ships: SQLite (default), PostgreSQL alone, all three
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --no-default-features --features postgres -- -D warnings
	$(CARGO) clippy --workspace --all-targets --features postgres,memory -- -D warnings

layering: ## The domain crate must not depend on the web or database stacks
	@if $(CARGO) tree -p chat-domain -e normal --prefix none | grep -E '^(actix|diesel|r2d2|tokio)'; then \
		echo "chat-domain depends on an outer layer (above)"; exit 1; \
	else echo "layering ok: chat-domain has no actix/diesel/r2d2/tokio dependency"; fi

test: lint test-sqlite test-postgres test-memory test-browser test-schemathesis ## Everything: lint, the suite on SQLite, on PostgreSQL, the end-to-end suites on the in-memory store, the web client in Chromium, schemathesis against the OpenAPI document
	@cat target/test-logs/*.log | awk '/^test result:/ { p += $$4; f += $$6; s += $$8 } \
		END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }'

# Each suite's output is kept in target/test-logs/ for the total above.
# tests/import_django.rs builds a real Django database (Django pinned in
# tests/django_fixture/requirements.txt, in target/django-venv); without
# python3's venv it passes as skipped, which is said here as loudly as the
# other skips, and REQUIRE_DJANGO=1 makes the test itself fail instead.
DJANGO_MISSING = $(if $(shell python3 -c 'import ensurepip, venv' 2>/dev/null && echo ok),,python3 with venv is not installed (apt-get install python3-venv))

test-sqlite: ## The whole suite on SQLite
	@mkdir -p target/test-logs && rm -f target/test-logs/*.log
	@if [ -n "$(DJANGO_MISSING)" ]; then \
		echo; \
		echo "################################################################"; \
		echo "## DJANGO IMPORT TEST SKIPPED: $(DJANGO_MISSING)"; \
		echo "################################################################"; \
		echo; \
		if [ "$$REQUIRE_DJANGO" = "1" ]; then echo "REQUIRE_DJANGO=1: failing."; exit 1; fi; \
	fi
	$(CARGO) test --workspace 2>&1 | tee target/test-logs/sqlite.log; exit $${PIPESTATUS[0]}

test-postgres: ## The whole suite on PostgreSQL (needs TEST_DATABASE_URL)
	@if [ -z "$$TEST_DATABASE_URL" ]; then \
		echo; \
		echo "################################################################"; \
		echo "## PostgreSQL SKIPPED: TEST_DATABASE_URL is not set.           ##"; \
		echo "## e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"; \
		echo "################################################################"; \
		echo; \
		if [ "$$REQUIRE_POSTGRES" = "1" ]; then echo "REQUIRE_POSTGRES=1: failing."; exit 1; fi; \
	else \
		echo "== PostgreSQL suite against $$TEST_DATABASE_URL"; \
		mkdir -p target/test-logs; \
		$(CARGO) test --workspace $(PG_FEATURES) 2>&1 | tee target/test-logs/postgres.log; exit $${PIPESTATUS[0]}; \
	fi

test-memory: ## The end-to-end suites against the in-memory store (the benchmark's ceiling)
	@mkdir -p target/test-logs
	TEST_STORE=memory $(CARGO) test --features memory --test rest_api --test websocket \
		--test hostile_input --test authorization \
		--test v2_socket --test v2_rest --test v2_presence_typing --test v2_hostile_input --test health \
		--test accounts --test asyncapi 2>&1 \
		| tee target/test-logs/memory.log; exit $${PIPESTATUS[0]}

# The web client in a real browser (web-tests/: node's test runner driving
# Debian's Chromium through playwright-core). Skipped with a banner when
# chromium or node/npm is missing, unless REQUIRE_BROWSER=1. The summary line
# goes to target/test-logs/browser.log in cargo's format, for the total above.
CHROMIUM ?= $(shell if [ -x /usr/bin/chromium ]; then echo /usr/bin/chromium; else command -v chromium 2>/dev/null; fi)
BROWSER_MISSING = $(strip $(if $(CHROMIUM),,chromium is not installed (apt-get install chromium)) \
	$(if $(shell command -v node 2>/dev/null),,node is not installed (apt-get install nodejs npm)) \
	$(if $(shell command -v npm 2>/dev/null),,npm is not installed (apt-get install npm)))

test-browser: ## The web client in headless Chromium (web-tests/; needs chromium, node, npm)
	@mkdir -p target/test-logs && rm -f target/test-logs/browser.log
	@if [ -n "$(BROWSER_MISSING)" ]; then \
		echo; \
		echo "################################################################"; \
		echo "## BROWSER TESTS SKIPPED: $(BROWSER_MISSING)"; \
		echo "################################################################"; \
		echo; \
		if [ "$$REQUIRE_BROWSER" = "1" ]; then echo "REQUIRE_BROWSER=1: failing."; exit 1; fi; \
	else \
		$(CARGO) build --release --bin chat-server && \
		{ $(WEB_TESTS_DEPS); } && \
		cd web-tests && CHROMIUM_PATH="$(CHROMIUM)" node run.mjs; \
	fi

# schemathesis (PyPI, pinned) against a live release server: every
# operation of docs/openapi.json, generated input, stateful sequences. Needs
# python3 with venv and curl; skipped with a banner otherwise, unless
# REQUIRE_SCHEMATHESIS=1. The summary line goes to
# target/test-logs/schemathesis.log in cargo's format (one per operation
# tested), for the total above.
SCHEMATHESIS_MISSING = $(strip $(if $(shell python3 -c 'import ensurepip, venv' 2>/dev/null && echo ok),,python3 with venv is not installed (apt-get install python3-venv)) \
	$(if $(shell command -v curl 2>/dev/null),,curl is not installed (apt-get install curl)))

test-schemathesis: ## schemathesis against a live server and docs/openapi.json (needs python3-venv, curl)
	@mkdir -p target/test-logs && rm -f target/test-logs/schemathesis.log
	@if [ -n "$(SCHEMATHESIS_MISSING)" ]; then \
		echo; \
		echo "################################################################"; \
		echo "## SCHEMATHESIS SKIPPED: $(SCHEMATHESIS_MISSING)"; \
		echo "################################################################"; \
		echo; \
		if [ "$$REQUIRE_SCHEMATHESIS" = "1" ]; then echo "REQUIRE_SCHEMATHESIS=1: failing."; exit 1; fi; \
	else \
		tests/schemathesis/run.sh 2>&1 | tee target/test-logs/schemathesis.out; status=$${PIPESTATUS[0]}; \
		passed=$$(grep -oE 'Tested: [0-9]+' target/test-logs/schemathesis.out | awk '{ n += $$2 } END { print n + 0 }'); \
		if [ $$status -eq 0 ]; then echo "test result: ok. $${passed:-0} passed; 0 failed; 0 ignored" > target/test-logs/schemathesis.log; \
		else echo "test result: FAILED. 0 passed; 1 failed; 0 ignored" > target/test-logs/schemathesis.log; fi; \
		exit $$status; \
	fi

# npm ci when web-tests/node_modules is missing or older than the lock file.
WEB_TESTS_DEPS = if [ ! -f web-tests/node_modules/.installed ] || \
		[ web-tests/package-lock.json -nt web-tests/node_modules/.installed ]; then \
		(cd web-tests && npm ci --no-audit --no-fund) && touch web-tests/node_modules/.installed; fi

test-slow: ## The long tests (tests/slow.rs, a minute or more each): SQLite, and PostgreSQL when TEST_DATABASE_URL is set
	$(CARGO) test --test slow -- --ignored --nocapture
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== slow tests on PostgreSQL against $$TEST_DATABASE_URL"; \
		$(CARGO) test $(PG_FEATURES) --test slow -- --ignored --nocapture; \
	else echo "PostgreSQL slow tests SKIPPED: TEST_DATABASE_URL is not set"; \
		if [ "$$REQUIRE_POSTGRES" = "1" ]; then echo "REQUIRE_POSTGRES=1: failing."; exit 1; fi; \
	fi

clean: ## Remove build output (not ./data)
	$(CARGO) clean

# --- Benchmark (crates/bench, issue 3) ----------------------------------------
.PHONY: bench bench-smoke bench-web bench-import bench-curves

bench: ## Release build, then a short issue-3 table: SQLite, PostgreSQL (TEST_DATABASE_URL), in-memory ceiling; then bench-web and bench-import
	crates/bench/run.sh
	@if [ -n "$(BROWSER_MISSING)" ]; then echo "bench-web SKIPPED: $(BROWSER_MISSING)"; \
	else $(MAKE) --no-print-directory bench-web; fi
	BENCH_SKIP_BUILD=1 crates/bench/import.sh

bench-web: ## The web client in Chromium: first-load bytes, a 100,000-message chat, 5,000 live messages
	@if [ -n "$(BROWSER_MISSING)" ]; then echo "bench-web SKIPPED: $(BROWSER_MISSING)"; exit 1; fi
	$(CARGO) build --release --bin chat-server
	@$(WEB_TESTS_DEPS)
	cd web-tests && CHROMIUM_PATH="$(CHROMIUM)" node bench.mjs

bench-import: ## Release build, then import-django of a generated 1,000,000-message Django database: messages/s (>= 50,000) and peak RSS
	crates/bench/import.sh

bench-curves: ## Release build, then how each cost grows (sockets, history, catch-up, chat list, RSS) on the relay, SQLite, PostgreSQL: docs/performance/*.png (~35 min; needs fonts-dejavu-core)
	crates/bench/curves.sh

bench-smoke: ## A few seconds of every benchmark mode against a release server on SQLite
	crates/bench/run.sh --smoke

# --- Fuzzing (fuzz/, cargo-fuzz; not part of `make test`) ----------------------
.PHONY: fuzz

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := frame_parser token_extractor v2_frame_parser

# cargo-fuzz passes nightly-only rustc flags (sanitizer, coverage
# instrumentation); RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain take
# them. New inputs go to fuzz/target/corpus/<target> (ignored), so the seeds
# committed in fuzz/corpus/<target> are only read; crashes land in
# fuzz/artifacts/<target>.
fuzz: ## Fuzz the WebSocket frame parser and the token extractor, FUZZ_SECONDS (30) each
	@command -v c++ >/dev/null || { echo "make fuzz needs a C++ compiler for libFuzzer: apt-get install g++"; exit 1; }
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		mkdir -p fuzz/target/corpus/$$t; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# --- API description (docs/openapi.json, generated from the code) ------------
.PHONY: openapi

openapi: ## Rewrite docs/openapi.json from the code (tests/openapi.rs fails until it matches)
	UPDATE_API_DOCS=1 $(CARGO) test --test openapi the_served_document_is_the_committed_copy
