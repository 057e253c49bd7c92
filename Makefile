# The two commands of the README. Each one sets up everything it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.datp-installed
RUN ?= runs/demo

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Exact pins live here, ranges in pyproject.toml.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/datp demo --out $(RUN)

test: $(STAMP)
	$(VENV)/bin/ruff check datp tests benchmarks experiments
	$(PY) -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check datp tests benchmarks experiments

clean:
	rm -rf $(VENV) runs .pytest_cache
