# Two commands run everything on a fresh machine with Python 3.11+ and make
# (on Debian or Ubuntu also the python3-venv package):
#   make run    install into .venv, load data, serve the API on http://127.0.0.1:5000
#   make test   install into .venv, lint, type-check, run the whole test suite
# Another Python: make run PYTHON=python3.12. Another port: make run PORT=8080.
PYTHON ?= python3
# Only the command line changes it: the environment's PORT is gunicorn's (.env.example).
PORT := 5000
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# .installed holds the version of the Python that built .venv: naming another
# Python (make run PYTHON=python3.12) rebuilds it, after check-python.sh.
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifneq ($(PYTHON_VERSION),$(shell cat $(INSTALLED) 2>/dev/null))
.PHONY: $(INSTALLED)
endif
# The dashboard's chart library, vendored (no CDN): bump the version, then run `make vendor-charts`.
LIGHTWEIGHT_CHARTS_VERSION := 5.2.1
CHARTS_DIR := app/static/vendor/lightweight-charts
# axe-core, the accessibility checker the browser tests inject (never served): `make vendor-axe`.
AXE_CORE_VERSION := 4.14.1
AXE_DIR := tests/browser/vendor/axe-core

.PHONY: install run test screenshot openapi benchmark lock vendor-charts vendor-axe

# The lock files pin every package, dependencies included, with their hashes;
# pip refuses anything else. requirements*.txt are the lists people edit.
$(INSTALLED): requirements.lock requirements-dev.lock
	@sh scripts/check-python.sh "$(PYTHON)" $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements-dev.lock
	echo "$(PYTHON_VERSION)" > $(INSTALLED)

install: $(INSTALLED)

# The fetch job brings the schema up to date, then fetches with the key from
# .env, or loads the whole bundled sample when there is none. A failed fetch
# (e.g. a spent daily quota) still serves what is stored, and says how to
# load the sample instead.
run: $(INSTALLED)
	-$(BIN)/python get_raw_data.py --sample-if-no-key
	@echo "Dashboard: http://127.0.0.1:$(PORT)/  Swagger UI: http://127.0.0.1:$(PORT)/api/docs  Logs: data/log/  Stop: Ctrl-C"
	$(BIN)/flask --app app run --host 127.0.0.1 --port $(PORT)

test: $(INSTALLED)
	$(BIN)/flake8
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# After a change to the dashboard's look: retake the README's screenshot, docs/dashboard.png
# (a plain test run leaves it alone); it is rewritten only if the page visibly changed.
screenshot: $(INSTALLED)
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/browser/test_dashboard.py \
		-k test_dashboard_draws_candles_volume_and_the_statistics_of_the_range

# After editing requirements.txt or requirements-dev.txt: regenerate both lock files.
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-header
lock: $(INSTALLED)
	$(PIP_COMPILE) --output-file requirements.lock requirements.txt
	$(PIP_COMPILE) --constraint requirements.lock --output-file requirements-dev.lock \
		requirements-dev.txt

openapi: $(INSTALLED)
	$(BIN)/flask --app app openapi

# wrk drives the load; it comes from Debian's packages (run as root, or install it yourself).
benchmark: $(INSTALLED)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python scripts/benchmark.py $(BENCHMARK_ARGS)

# Refresh the vendored chart library from the npm registry: its licence and standalone ES module.
# It unpacks into a temporary folder first, so a failed download keeps the library in place.
vendor-charts:
	tmp=$$(mktemp -d) && npm pack --silent --pack-destination $$tmp lightweight-charts@$(LIGHTWEIGHT_CHARTS_VERSION) >/dev/null && tar -xzf $$tmp/lightweight-charts-$(LIGHTWEIGHT_CHARTS_VERSION).tgz -C $$tmp --strip-components=1 package/LICENSE package/dist/lightweight-charts.standalone.production.mjs && rm -rf $(CHARTS_DIR) && mkdir -p $(CHARTS_DIR) && mv $$tmp/LICENSE $$tmp/dist/lightweight-charts.standalone.production.mjs $(CHARTS_DIR)/ && rm -rf $$tmp

# Refresh the vendored axe-core the same way: its minified script and its licences.
vendor-axe:
	tmp=$$(mktemp -d) && npm pack --silent --pack-destination $$tmp axe-core@$(AXE_CORE_VERSION) >/dev/null && tar -xzf $$tmp/axe-core-$(AXE_CORE_VERSION).tgz -C $$tmp --strip-components=1 package/LICENSE package/LICENSE-3RD-PARTY.txt package/axe.min.js && rm -rf $(AXE_DIR) && mkdir -p $(AXE_DIR) && mv $$tmp/LICENSE $$tmp/LICENSE-3RD-PARTY.txt $$tmp/axe.min.js $(AXE_DIR)/ && rm -rf $$tmp
