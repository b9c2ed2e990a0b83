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
export MOLT_WORKER_BIN ?= $(CURDIR)/target/debug/molt_worker

.PHONY: all setup build build-release test test-rust test-loom test-python demo clean

all: test

# The venv is rebuilt when the pinned requirements change.
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

build:
	$(CARGO) build --workspace --all-targets

build-release:
	$(CARGO) build --release -p molt-worker

test: setup build test-rust test-python

test-rust:
	$(CARGO) test --workspace

test-python: setup build
	$(PY) -m pytest -q worker/tests/py

demo: setup build-release
	$(PY) bench/scripts/stdio_echo_rtt.py --worker target/release/molt_worker --calls 20000

clean:
	$(CARGO) clean
	rm -rf $(VENV) .tools
