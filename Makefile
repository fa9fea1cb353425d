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
	$(PY) -m pytest

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

# mypy --strict (configured in pyproject.toml) on the modules that are clean so far; the list
# grows until it is the whole monitor/ package, then `make test` runs it too.
TYPED := monitor/failover monitor/ops monitor/config.py monitor/setting_values.py monitor/runtime.py \
	monitor/__main__.py monitor/serve.py monitor/paths.py monitor/actor.py monitor/recorder.py \
	monitor/web/ports.py
typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy --follow-imports=silent $(TYPED)

bench: $(VENV)/.dev-installed
	$(PY) bench/failover_time.py
	$(PY) bench/gateway.py --monitor

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
