# The README's three commands are `make demo`, `make test` and `make demo-stack`; each sets up what it
# needs.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV     := $(VENV)/.dev-installed

.PHONY: demo demo-stack landing-screenshot image-test test lint format typecheck unit system-deps chaos soak bench bench-million bench-load bench-webhooks rules dashboards chart docs clean

# e.g. make demo DEMO_ARGS="--alertmanager.url http://127.0.0.1:9093"
demo: $(RUNTIME)
	$(BIN)/workflow-runs-exporter demo $(DEMO_ARGS)

# The demo with a real Prometheus (the shipped rules) and Alertmanager, on loopback; ports by
# variables, e.g. make demo-stack PROMETHEUS=127.0.0.1:19090
EXPORTER     ?= 127.0.0.1:9855
PROMETHEUS   ?= 127.0.0.1:9090
ALERTMANAGER ?= 127.0.0.1:9093
demo-stack: $(RUNTIME)
	scripts/install-system-deps.sh --demo
	$(BIN)/workflow-runs-exporter demo-stack --web.listen-address $(EXPORTER) \
		--prometheus.listen-address $(PROMETHEUS) --alertmanager.listen-address $(ALERTMANAGER) \
		$(DEMO_ARGS)

# The landing page in headless Chromium (installed when missing; not part of `make test`).
landing-screenshot: $(RUNTIME)
	scripts/landing-screenshot.sh landing.png

# The real Dockerfile built and run with buildah on a debootstrap stand-in for the python image
# (root; a few minutes; not part of `make test`).
image-test: $(RUNTIME)
	scripts/image-test.sh

# The suite mostly waits on real servers (simulators, Prometheus, Alertmanager), so it runs in
# parallel workers; TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3

test: $(DEV) system-deps lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV)
	$(BIN)/mypy

format: $(DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

chaos: $(DEV)
	$(BIN)/python -m tests.chaos --kills 50 --faults 1000

bench: $(DEV)
	$(BIN)/python -m bench.run

# 1,000,000 runs through the API, apart: the simulator takes over twenty minutes to serve them.
bench-million: $(DEV)
	$(BIN)/python -m bench.run --million

# 200 scrapers and 1,000 silent sockets against an exporter holding 10,000 series, for 30 s.
bench-load: $(DEV)
	$(BIN)/python -m bench.load

# Webhook hints: hint-to-/metrics latency, and API requests per cycle with webhooks off and on.
bench-webhooks: $(DEV)
	$(BIN)/python -m bench.webhooks

soak: $(DEV)
	$(BIN)/python -m tests.soak --days 7 --runs-per-day 20000

# Both also write the monitoring mixin's generated parts (mixin/).
rules: $(DEV)
	$(BIN)/python -m monitoring.rules
	$(BIN)/python -m monitoring.slo_rules
	$(BIN)/python -m monitoring.mixin

dashboards: $(DEV)
	$(BIN)/python -m monitoring.dashboards
	$(BIN)/python -m monitoring.mixin

# The provider tables of docs/providers.md, from the provider registry.
docs: $(DEV)
	$(BIN)/python -m monitoring.docs

# The chart's PrometheusRule template and dashboard copies, from the canonical files.
chart: $(DEV)
	$(BIN)/python -m monitoring.chart

unit: $(DEV)
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not system"

system-deps:
	scripts/install-system-deps.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(RUNTIME)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
