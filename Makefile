# Stepwise: `make demo` runs the app with demo data; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install demo test worker bench lint chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The CPU build of torch first: a looser request would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Development targets run with DEBUG on unless told otherwise: with DEBUG off the
# settings refuse to start without SECRET_KEY (see README, "Security and production").
demo: install
	DEBUG=$${DEBUG:-true} $(PY) manage.py demo

# One worker for both queues on a development machine; a GPU box runs `-Q gpu` apart.
worker: install
	DEBUG=$${DEBUG:-true} $(VENV)/bin/celery -A annotator worker -l info -Q default,gpu

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium from Debian for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "Could not install chromium (needs root and Debian's package index)"; exit 1; }; }

# The suite runs in TEST_PROCESSES pytest processes (pytest-xdist), each with a test
# database, a broker database and a var folder of its own (tests/settings.py): most of its
# time is spent waiting on worker and server processes, so more processes than cores pay.
TEST_PROCESSES ?= 4
test: install chromium
	$(PY) -m tests.testenv $(VENV)/bin/pytest -n $(TEST_PROCESSES) --dist worksteal $(PYTEST_ARGS)

bench: install
	$(PY) bench/import_export.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) var
