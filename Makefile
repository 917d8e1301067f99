# The two set-up commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEER := bench/peers/bin/otelcol-bench
JAEGER := bench/peers/bin/jaeger
JS_SENDER := tests/peers/js/node_modules/.installed
JAVA_SENDER := tests/peers/java/lib/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint typecheck unit edge e2e fmt bench bench-quick peers jaeger js-sender java-sender system-deps clean docs compiled

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "refinery_py needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## make compiled: compile the per-span modules with mypyc (refinery_py/compiled.py) unless the
## build is current; without a C compiler refinery_py runs them as pure Python
compiled: $(STAMP)
	@$(BIN)/python -c 'from refinery_py.compiled import main; main(["build"])'

## make run: install into .venv and start `refinery-py serve` on the built-in defaults
##   (CONFIG=FILE starts it with that config file)
run: $(STAMP) compiled
	$(BIN)/refinery-py serve $(if $(CONFIG),--config $(CONFIG))

## make test: every quality gate and the whole test suite (builds or installs the real servers the
## tests run: the Collector and Jaeger from the Go module proxy, Redis and Prometheus from Debian,
## the OpenTelemetry JS and Java SDKs from the npm registry and Maven Central)
test: $(STAMP) compiled peers system-deps js-sender java-sender lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

docs: $(STAMP)
	$(BIN)/python -m refinery_py.config.reference docs

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make bench: refinery_py end to end beside the OpenTelemetry Collector's tail sampler (minutes)
## make bench-quick: the same in about 75 s; what the figures mean: bench/README.md
bench: $(STAMP) compiled $(PEER)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) compiled $(PEER)
	$(BIN)/python -m bench.run --quick

## make peers: build the Collector (the benchmark's rival; runs collector/) and Jaeger, side by side
## (Go, modules pinned in bench/peers and bench/peers/jaeger; a cold build takes minutes)
peers:
	@$(MAKE) --no-print-directory -s -j2 $(PEER) $(JAEGER)

$(PEER): bench/peers/main.go bench/peers/go.mod bench/peers/go.sum
	@echo "building the OpenTelemetry Collector (bench/peers) from the Go module proxy"
	cd bench/peers && go build -trimpath -ldflags="-s -w" -o bin/otelcol-bench .

## make jaeger: build Jaeger v2 (in-memory tracing backend, OTLP in, query API) into bench/peers/bin
jaeger: $(JAEGER)

$(JAEGER): bench/peers/jaeger/go.mod bench/peers/jaeger/go.sum
	@echo "building Jaeger (bench/peers/jaeger) from the Go module proxy"
	cd bench/peers/jaeger && go build -trimpath -ldflags="-s -w" -o ../bin/jaeger \
	  github.com/jaegertracing/jaeger/cmd/jaeger

## make js-sender: the OpenTelemetry JS SDK (tests/peers/js, versions pinned in its lock file), an
## OTLP/HTTP sender (JSON and protobuf) for the tests
js-sender: $(JS_SENDER)

$(JS_SENDER): tests/peers/js/package.json tests/peers/js/package-lock.json | system-deps
	cd tests/peers/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## make java-sender: the OpenTelemetry Java SDK's jars (tests/peers/java/pom.xml pins them) in
## tests/peers/java/lib, for Send.java, an OTLP/HTTP protobuf sender for the tests
java-sender: $(JAVA_SENDER)

$(JAVA_SENDER): tests/peers/java/pom.xml | system-deps
	rm -rf tests/peers/java/lib
	mvn -q -B -Dstyle.color=never -f tests/peers/java/pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=lib
	touch $@

# Servers and toolchains the tests run for real, from Debian, as command:package; apt-get installs
# what is missing. The tests start their own instances on free ports (Redis on a Unix socket) with their
# own data directories; packaged services are stopped and disabled so they sit on no port.
SYSTEM_DEPS := redis-server:redis-server prometheus:prometheus promtool:prometheus node:nodejs \
  npm:npm javac:default-jdk-headless mvn:maven

system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  command -v "$${dep%%:*}" >/dev/null 2>&1 || missing="$$missing $${dep#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get; the tests run them)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $$missing >/dev/null && \
	  for service in redis-server prometheus; do \
	    $(SUDO) systemctl disable --now $$service >/dev/null 2>&1 || \
	    $(SUDO) service $$service stop >/dev/null 2>&1 || true; \
	  done; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache refinery-data build/compiled \
	  tests/peers/js/node_modules tests/peers/java/lib
