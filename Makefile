# molt: the two commands a new machine needs are `make demo` and `make test` (see README.md).
# Everything they need is installed from this file: Python packages into .venv/, tools the
# benchmark needs into .tools/. Nothing is installed system-wide.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CARGO ?= cargo
export MOLT_WORKER_BIN ?= $(CURDIR)/target/debug/molt_worker_test
PORT ?= 8000
# Runs a command with a throwaway PostgreSQL cluster (scripts/pgcluster.py): started, and
# stopped after, unless MOLT_PG_DSN names one already, so that `make test` starts one for all.
WITH_PG := $(PYTHON) scripts/pgcluster.py run --

.PHONY: all setup build build-release test test-rust test-loom test-python python-suites test-reliability demo serve bench-check bench-ipc bench-web oha fuzz chaos soak deny clean

all: test

# The venv is rebuilt when the pinned requirements change, and the client reinstalled when
# the Rust sources of its native module (molt_accel._native) do.
NATIVE_SOURCES := $(wildcard client-py/native/Cargo.toml client-py/native/src/*.rs ipc-ring/Cargo.toml ipc-ring/src/*.rs ipc-ring/src/*/*.rs)
$(VENV)/.installed: requirements-dev.txt client-py/pyproject.toml $(NATIVE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet -e ./client-py
	touch $@

setup: $(VENV)/.installed

# The template user crate (examples/worker-app) is a workspace of its own, as a user's crate
# is; it shares target/ so that the dependencies are built once.
EXAMPLE_WORKER := --manifest-path examples/worker-app/Cargo.toml --target-dir target

build:
	$(CARGO) build --workspace --bins --tests --examples
	$(CARGO) build $(EXAMPLE_WORKER)

# molt_worker_test too: the benchmark's cancellation check runs its db_sleep entry.
build-release:
	$(CARGO) build --release -p molt-demo-worker --bin molt_worker --bin molt_worker_test

test: setup build
	$(WITH_PG) $(MAKE) --no-print-directory test-rust test-loom test-python test-reliability

test-rust:
	$(WITH_PG) $(CARGO) test --workspace
	$(CARGO) test $(EXAMPLE_WORKER)

# loom explores the ring's and the sleep/wake handshake's interleavings (bounded preemptions).
# Its own target dir: the loom cfg would otherwise rebuild every dependency in target/.
test-loom:
	RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 $(CARGO) test -p molt-ipc-ring --release --target-dir target/loom --test loom

# One pytest process per suite: each configures Django (or not) its own way, and Django's
# settings can be configured once per process.
test-python: setup build
	$(WITH_PG) $(MAKE) --no-print-directory python-suites

python-suites:
	$(PY) -m pytest -q worker/tests/py
	cd client-py && ../$(PY) -m mypy
	$(PY) -m pytest -q client-py/tests
	$(PY) -m pytest -q client-py/native/tests
	$(PY) -m pytest -q demo/django_app/tests
	$(PY) -m pytest -q examples/worker-app/tests

# docs/reliability.md: the committed fuzz corpora replayed on stable (fuzz/ is outside the
# workspace), then tests/: the short chaos (50 kill cycles), overload, security and Python
# decoder runs.
test-reliability: setup build
	$(CARGO) test --manifest-path fuzz/Cargo.toml --target-dir target
	$(PY) -m pytest -q tests

# Every fuzz target for FUZZ_SECONDS each, on nightly; installs cargo-fuzz into .tools/ once.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/scripts/run_all.sh

# The full chaos runs: 1000 kill cycles, 20 s of overload. Not in CI.
chaos: setup build
	MOLT_CHAOS_CYCLES=1000 OVERLOAD_SECONDS=20 $(PY) -m pytest -q -s tests/chaos

# Mixed load for DURATION seconds on a client of its own (stdio) and on the demo under gunicorn
# attached to a shared worker over shm (loopback only), failing on RSS/fd/thread growth of any
# of those processes after warm-up. Not in CI.
DURATION ?= 1800
soak: setup build
	$(PY) tests/soak/soak.py --duration $(DURATION) --django

# molt-web's benchmark (docs/web.md, "Benchmark"): the example service's /items and /db/items
# against Django's /baseline, /offload and /db/baseline and the same entries on bare axum, at
# concurrency 1, 32 and 256 (bench/results/<UTC date-time>-web/; WEB_BENCH_ARGS narrows it);
# then molt-web's per-request cost in-process, and the in-process loopback load bench. Every
# server listens on 127.0.0.1; every step stops by itself.
WEB_BENCH_ARGS ?=
bench-web: setup build-release oha
	$(CARGO) build --release -p molt-web-service --bin molt-web-service --example bare_axum
	$(WITH_PG) $(PY) bench/scripts/web_bench.py $(WEB_BENCH_ARGS)
	$(CARGO) bench -p molt-web --bench layers
	$(CARGO) bench -p molt-web --bench load -- --seconds 5 --concurrency 1,32,256

# Licenses, bans and sources of the Rust dependency tree (deny.toml); builds cargo-deny into
# .tools/ once. Advisories need a database from outside the registries: not checked here.
deny:
	tests/security/check_dependencies.sh

# The load generator (oha), built into .tools/ once. The benchmark speaks plain HTTP to
# 127.0.0.1, so oha is built with the system's OpenSSL (libssl-dev) instead of its default
# rustls stack, whose C crypto library made the build the longest step of a fresh `make demo`.
oha:
	scripts/ensure_tool.sh oha 1.16.0 --no-default-features --features native-tls > /dev/null

# /baseline vs /offload, short profile; writes bench/results/<UTC date-time>/ (docs/benchmark.md).
# Its three set-up steps run side by side: pip mostly waits on the network and oha's last
# crates compile on one core, so the worker build fills the gaps (on a fresh machine the oha
# build is most of make demo's time).
demo:
	$(MAKE) --no-print-directory -j3 setup build-release oha
	$(WITH_PG) $(PY) bench/scripts/run_demo_bench.py

# The demo served as the benchmark serves it, on 127.0.0.1:$(PORT) (sync) and $(PORT)+1 (async).
serve: setup build-release
	$(WITH_PG) $(PY) bench/scripts/serve.py --port $(PORT) --worker-bin target/release/molt_worker

# Round trip of 64 B and 1 KiB echo through MoltClient over shm and stdio (bench/ipc/README.md),
# and the Rust-side criterion benches of the ring and the worker's shm transport.
bench-ipc: setup build-release
	$(PY) bench/ipc/py_roundtrip.py
	$(CARGO) bench -p molt-ipc-ring --bench ring
	$(CARGO) bench -p molt-demo-worker --bench shm_echo

# Short run compared with bench/baseline.json; not in CI (noisy machines).
bench-check: setup build-release oha
	$(WITH_PG) $(PY) bench/scripts/bench_check.py

clean:
	$(CARGO) clean
	rm -rf $(VENV) .tools
