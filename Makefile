# Two commands do everything on a fresh machine:
#   make run   set up, then run the daemon on targets.yaml (SQLite database next to it)
#   make test  set up, then run the whole test suite
# Set-up is idempotent: a virtualenv in .venv, the package installed into it, and a
# Chromium that Playwright can drive (see `monitor browser --help` for the search order).

# The first Python 3.11+ on PATH (override: make PYTHON=/path/to/python3.12 test).
ifndef PYTHON
PYTHON := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= targets.yaml

.PHONY: run test bench setup browser redis rabbitmq archive-tools clean

run: setup
	$(BIN)/monitor --config $(CONFIG) run

test: setup redis rabbitmq archive-tools
	$(BIN)/python -m pytest -q

bench: setup redis
	$(BIN)/python benchmarks/run_all.py

setup: $(STAMP) browser

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required (none found on PATH)"; exit 2; }
	@echo "setup: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

browser: $(STAMP)
	$(BIN)/monitor browser --install

# The distributed tests start a real redis-server (README "Many machines"); `make test` installs
# it from the distribution's packages when missing, like the browser (`make run` does not need it).
redis:
	@command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server || { \
		echo "setup: installing redis-server"; \
		if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }; \
		else sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server || { sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }; fi; }

# One distributed test runs the same workers on RabbitMQ (the broker is a URL): `make test`
# installs rabbitmq-server too; the test starts its own node on free ports.
rabbitmq:
	@command -v rabbitmq-server >/dev/null 2>&1 || test -x /usr/sbin/rabbitmq-server || { \
		echo "setup: installing rabbitmq-server"; \
		if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server; }; \
		else sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server || { sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server; }; fi; }

# pywb and the wacz validator replay and check exported bundles in the tests. They pin an old
# redis client that Celery cannot share, so they live in a virtualenv of their own, like the
# browser they are outside tools the tests run (tests/conftest.py: archive_tool).
ARCHIVE_VENV := .venv-archive
archive-tools: $(ARCHIVE_VENV)/.installed

$(ARCHIVE_VENV)/.installed:
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required (none found on PATH)"; exit 2; }
	@echo "setup: creating $(ARCHIVE_VENV) (pywb, wacz) for the evidence tests"
	$(PYTHON) -m venv $(ARCHIVE_VENV)
	$(ARCHIVE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "pywb>=2.8" "wacz>=0.5"
	@touch $@

clean:
	rm -rf $(VENV) $(ARCHIVE_VENV) build *.egg-info
