# The README's two commands live here. Everything is idempotent: a second run only
# re-checks what the first installed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
STATE ?= $(CURDIR)/state

.PHONY: run test venv lint typecheck bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ironclaw-controlplane --dev --state-dir $(STATE)

test: $(STAMP)
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check ironclaw sandbox_agent bench tests
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy ironclaw

bench: $(STAMP)
	$(VENV)/bin/python -m bench queue-floor
	$(VENV)/bin/python -m bench e2e

bench-quick: $(STAMP)
	$(VENV)/bin/python -m bench queue-floor --quick --no-write
	$(VENV)/bin/python -m bench e2e --quick --no-write

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
