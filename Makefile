# One command each, on a fresh machine: `make demo` and `make test` create the virtualenv and
# install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
# keep the embedded Ray of the demo and tests on 127.0.0.1 (single-node mode)
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

.PHONY: install demo test test-fast lint
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/rtune demo

test: $(VENV)/.installed lint
	$(PY) -m pytest -q -ra --durations=15 tests

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -ra -m "not slow" tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check rtune tests benchmarks cluster
