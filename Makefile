# Everything runs from a private virtualenv built from pyproject.toml; only python3 (>= 3.11) and GNU
# make are needed. Without DATABASE_URL / TEST_DATABASE_URL an embedded PostgreSQL (from PyPI) is used.

VENV ?= .venv
PYTHON ?= python3
PY = $(VENV)/bin/python
PIP = $(PY) -m pip install --quiet --disable-pip-version-check
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -q
BENCH ?= append
BENCH_ARGS ?=

.PHONY: install install-dev migrate run test lint bench screenshots clean clean-data

# Two stamps: the server's own dependencies, then the test and lint tools on top. `make run` needs only
# the first (a smaller, faster venv); `make test` and `make lint` add the second to whatever venv exists.
# Both are rebuilt when pyproject.toml changes, so new dependencies reach the venv.
# A current pip first: it resolves and installs the rest faster than the one a venv starts with.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "Installing collab-engine and its runtime dependencies into $(VENV) ..."
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo "Adding the test and lint tools to $(VENV) ..."
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

migrate: install
	$(VENV)/bin/collab migrate

# serve migrates to head itself and prints a token and how to connect.
run: install
	$(VENV)/bin/collab serve --host $(HOST) --port $(PORT)

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/$(BENCH).py $(BENCH_ARGS)

# Real screenshots of the app and the console (headless Chromium at /usr/bin/chromium) into
# docs/screenshots/, taken against a fresh database on the embedded test PostgreSQL.
screenshots: install-dev
	$(PY) -m tests.browser.screenshots docs/screenshots

# Keeps .data (the embedded database and the generated JWT secret); `make clean-data` removes it.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache .mypy_cache build *.egg-info
	find . -path ./.data -prune -o -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

# Stop any running `make run` first: this deletes the embedded server's data folder under it.
clean-data:
	rm -rf .data
