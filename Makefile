# The targets a developer runs are the ones CI runs (.ci/run calls `make test`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.flowcore-installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# The example plugin of docs/plugins.md, installed so its test runs it as users would.
EXAMPLE_PLUGIN := docs/examples/flowcore-example/pyproject.toml
# A module is hot (compiled) when a .pxd sits beside its .py: the rule setup.py and
# flowcore/_extensions.py read too.
HOT_PXD := $(wildcard flowcore/*.pxd)
HOT_SRC := $(HOT_PXD) $(HOT_PXD:.pxd=.py)
EXT_STAMP := build/.flowcore-extensions

.PHONY: demo demo-interactive build test lint typecheck docs docs-serve dist bench bench-check bench-peers clean

# Create the virtualenv and install flowcore (editable, with the dev tools, what the examples
# need and the docs tools), every plugin and the example plugin.
$(STAMP): pyproject.toml setup.py $(PLUGINS) $(EXAMPLE_PLUGIN)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,examples,docs]' $(foreach p,$(PLUGINS) $(EXAMPLE_PLUGIN),-e $(dir $(p)))
	touch $(STAMP)

# Recompile the hot path whenever one of its sources changed since the last build, so the
# compiled tests never run yesterday's code.
$(EXT_STAMP): $(STAMP) $(HOT_SRC) setup.py
	$(BIN)/python setup.py --quiet build_ext --inplace
	mkdir -p build && touch $(EXT_STAMP)

build: $(EXT_STAMP)

demo: $(EXT_STAMP)
	$(BIN)/python examples/claim_demo.py

demo-interactive: $(EXT_STAMP)
	$(BIN)/python examples/claim_demo.py --interactive

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, in build/site; a broken link or a missing page is an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# Wheels of flowcore and of every plugin under plugins/, in dist/, to install elsewhere with
# `pip install --find-links dist flowcore flowcore-sql`. flowcore's wheel, with its compiled hot
# path, is for this platform and this Python (pure Python where no C compiler was found).
dist: $(STAMP)
	rm -f dist/*.whl
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist . $(dir $(PLUGINS))

# The whole suite on the compiled hot path (an error if it is not built), then again on the
# pure-Python one. (The code samples of the docs run in tests/test_docs_samples.py.)
test: $(EXT_STAMP) lint typecheck docs
	$(BIN)/python -m pytest --impl compiled
	FLOWCORE_NO_EXTENSIONS=1 $(BIN)/python -m pytest --impl pure -q

bench: $(EXT_STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-columns=min,median,rounds

# The benchmark gate CI runs: fails when a same-run ratio regresses (see docs/performance.md).
bench-check: $(EXT_STAMP)
	$(BIN)/python benchmarks/gate.py

# flowcore beside LangGraph, Apache Burr and pydantic-graph on the same workloads (the table of
# docs/performance.md), in a virtualenv of their own so that the project's own never holds them:
# flowcore and flowcore-sql as users install them, and the pinned peers. Writes build/peers.md.
PEERS_VENV  := build/peers-venv
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_SRC   := $(wildcard flowcore/*.py flowcore/*/*.py flowcore/*.pxd plugins/flowcore-sql/flowcore_sql/*.py)
$(PEERS_STAMP): benchmarks/peers/requirements.txt pyproject.toml setup.py plugins/flowcore-sql/pyproject.toml $(PEERS_SRC)
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet '.[bench]' ./plugins/flowcore-sql -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/python benchmarks/peers/run.py $(PEERS_ARGS)

# The codec fuzz run CI makes: 1,000,000 mutated blobs and the deep and crafted values, on the
# compiled and the pure-Python codec, which must agree on every blob (fuzz/fuzz_codec.py).
fuzz: $(EXT_STAMP)
	$(BIN)/python fuzz/fuzz_codec.py --both

clean:
	rm -rf $(VENV) build dist *.egg-info .benchmarks .flowcore flowcore/*.so flowcore/*.c
