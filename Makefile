# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint typecheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.run-installed: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.run-installed
	$(PY) -m monitor run

test: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

# mypy --strict (configured in pyproject.toml) on the whole monitor/ package.
typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy

bench: $(VENV)/.dev-installed
	$(PY) bench/failover_time.py
	$(PY) bench/gateway.py --monitor
	$(PY) bench/replicas.py
	$(PY) bench/rollout.py
	$(PY) bench/live.py
	$(PY) bench/probe_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
