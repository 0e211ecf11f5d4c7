# The targets a developer runs are the ones CI runs (.ci/run calls `make test`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.flowcore-installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: demo demo-interactive test test-pure lint typecheck bench clean

# Create the virtualenv and install flowcore (editable, with the dev tools) and every plugin.
$(STAMP): pyproject.toml setup.py $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/claim_demo.py

demo-interactive: $(STAMP)
	$(BIN)/python examples/claim_demo.py --interactive

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite, then again on the pure-Python hot path (FLOWCORE_NO_EXTENSIONS=1).
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest
	FLOWCORE_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds

clean:
	rm -rf $(VENV) build dist *.egg-info .benchmarks .flowcore
