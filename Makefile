# vmfleet: `make demo` and `make test` set up everything they need on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST_STAMP := .cache/host-ready
JOBS ?= 2

.PHONY: all setup host demo demo-multihost test test-fast test-e2e fuzz bench lint fmt clean

all: test

# Debian packages + running virtlogd/libvirtd (idempotent, needs root).
host:
	bash scripts/setup-host.sh

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: host $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests $(wildcard bench) scripts
	$(VENV)/bin/ruff format --check src tests $(wildcard bench) scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff format src tests $(wildcard bench) scripts
	$(VENV)/bin/ruff check --fix src tests $(wildcard bench) scripts

# Every test: lint, fast tests on libvirt's test driver, end-to-end tests on real guests.
test: setup lint
	$(VENV)/bin/pytest -n $(JOBS) --dist loadgroup --durations=30 tests

test-fast: $(STAMP)
	$(VENV)/bin/pytest -n $(JOBS) -m 'not e2e' tests

test-e2e: setup
	$(VENV)/bin/pytest -n $(JOBS) --dist loadgroup -m e2e tests

# Many more fuzz examples of the four input formats than `make test` runs (FUZZ_EXAMPLES each),
# and the plan -> apply -> plan property test with 200 random edit sequences (make test: 60).
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	VMFLEET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -n $(JOBS) tests/test_fuzz_input.py
	VMFLEET_PROPERTY_EXAMPLES=200 $(VENV)/bin/pytest -q tests/test_plan_converges.py

bench: setup
	$(PY) -m bench

demo: setup
	bash scripts/demo.sh

# One fleet over three extra libvirt daemons on this machine (zones a, b, c); all removed after.
demo-multihost: setup
	bash scripts/demo-multihost.sh

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
