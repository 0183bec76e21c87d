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
	$(PY) -m pip install -q -e '.[test,all]'
	touch $@

# moto's S3-compatible server, in a virtualenv of its own (beside Ray it downgrades dateutil)
MOTO_VENV ?= .venv-moto
export RTUNE_MOTO_VENV := $(abspath $(MOTO_VENV))
$(MOTO_VENV)/bin/moto_server:
	$(PYTHON) -m cluster.s3_server install

# a second Ray installation, with ray[default] (the dashboard's job server), for the cluster the
# `ray job submit` tests run: in the main venv its dashboard agent would slow every embedded Ray
JOBS_VENV ?= .venv-jobs
export RTUNE_JOBS_VENV := $(abspath $(JOBS_VENV))
$(JOBS_VENV)/.installed: pyproject.toml $(VENV)/.installed
	$(PYTHON) -m venv $(JOBS_VENV)
	$(JOBS_VENV)/bin/python -m pip install -q --upgrade pip
	$(JOBS_VENV)/bin/python -m pip install -q -e . "ray[default]==$$($(PY) -c 'import ray; print(ray.__version__)')"
	touch $@

# Ray Tune beside rtune, for the side-by-side benchmarks (benchmarks/README.md): a venv of its own,
# so the test venv stays what CI installs
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[bench]'
	touch $@

.PHONY: install demo test test-fast lint bench-install install-parallel
bench-install: $(BENCH_VENV)/.installed

install: $(VENV)/.installed $(MOTO_VENV)/bin/moto_server $(JOBS_VENV)/.installed

# the virtualenvs two at a time (moto's beside the main one): 152 s -> 80 s on a clean clone
install-parallel:
	$(MAKE) -j2 install

demo: $(VENV)/.installed
	$(VENV)/bin/rtune demo

test: install-parallel
	$(MAKE) lint
	$(PY) -m pytest -q -ra --durations=15 tests

# the policies, the API and bad input without Ray, and one real run per area (`smoke`): ~1.5 min
test-fast: install-parallel
	$(PY) -m pytest -q -ra -m "not slow and (smoke or not ray)" tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check rtune tests benchmarks cluster
