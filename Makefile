# The two commands of the quick start: `make demo` and `make test`.
# Both set everything up from nothing but Python 3.11 and the package registries.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv

# uv must use the Python 3.11 it is given, never fetch an interpreter of its own.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup demo test lint system-deps clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Installs exactly what uv.lock pins (--frozen: never re-resolve, never update the lock).
setup: $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)

demo: setup
	$(VENV)/bin/keel demo

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/test_layering.py tests/test_architecture_doc.py

# Debian packages the tests run for real: prometheus (and promtool), postgresql, chromium.
system-deps:
	scripts/install-system-deps

test: lint system-deps
	$(VENV)/bin/pytest

clean:
	rm -rf $(TOOLS) $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
