# The two set-up commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEER := bench/peers/bin/otelcol-bench

.PHONY: run test lint typecheck unit edge e2e fmt bench bench-quick peers clean docs

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "refinery_py needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## make run: install into .venv and start `refinery-py serve` on the built-in defaults
run: $(STAMP)
	$(BIN)/refinery-py serve

## make test: every quality gate and the whole test suite (builds the real peers the tests run)
test: $(STAMP) $(PEER) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## make docs: regenerate the reference docs in docs/ from the code
docs: $(STAMP)
	$(BIN)/python -m refinery_py.config.reference docs

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make bench: refinery_py end to end beside the OpenTelemetry Collector's tail sampler (minutes)
## make bench-quick: the same in under a minute; what the figures mean: bench/README.md
bench: $(STAMP) $(PEER)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) $(PEER)
	$(BIN)/python -m bench.run --quick

## make peers: build the Collector the benchmark compares against (Go, modules pinned in bench/peers)
peers: $(PEER)

$(PEER): bench/peers/main.go bench/peers/go.mod bench/peers/go.sum
	cd bench/peers && go build -trimpath -o bin/otelcol-bench .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache refinery-data
