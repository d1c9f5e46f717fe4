# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STATE  ?= ./var

.PHONY: venv system-deps run test test-fast chaos bench clean

venv: $(STAMP)

# Re-installs only when the project's dependency list changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,postgres,api]"
	touch $(STAMP)

# Tools the tests use, from Debian's packages: systemd-analyze and shellcheck (packaging),
# strace (the no-network test), a C compiler (tests/support/clockstep.c steps the wall clock of
# a daemon under test), PostgreSQL (the store conformance suite on a real server),
# chromium and its driver (the dashboard, driven by selenium in a real browser), iproute2 (a
# network namespace whose link a node test cuts, as a partition would).
system-deps:
	@missing=""; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "make: please install:$$missing (apt-get)"; exit 1; fi; \
	fi

run: venv
	$(BIN)/diarized run --state-dir $(STATE)

test: venv system-deps
	$(BIN)/python -m pytest

# The model-free, chaos-free subset: seconds, for a change to scheduling or the store.
test-fast: venv system-deps
	$(BIN)/python -m pytest -m "not slow and not chaos"

# The long chaos run: more files, at least 100 kills of the daemon.
chaos: venv system-deps
	CHAOS_FILES=60 CHAOS_MIN_KILLS=100 NODES_CHAOS_SECONDS=180 $(BIN)/python -m pytest tests/chaos -s

bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
