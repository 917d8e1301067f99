# The two set-up commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEER := bench/peers/bin/otelcol-bench

.PHONY: run test lint typecheck unit edge e2e fmt bench bench-quick peers clean docs system-deps

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "refinery_py needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## make run: install into .venv and start `refinery-py serve` on the built-in defaults
run: $(STAMP)
	$(BIN)/refinery-py serve

## make test: every quality gate and the whole test suite (builds the real peers the tests run,
## installs the Debian packages of the real servers they start)
test: $(STAMP) $(PEER) system-deps lint typecheck
	$(BIN)/python -m pytest

# Servers the tests run for real, as command:debian-package; apt-get installs what is missing.
SYSTEM_DEPS := redis-server:redis-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  command -v "$${dep%%:*}" >/dev/null 2>&1 || missing="$$missing $${dep#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

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
