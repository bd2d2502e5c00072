# The README's two commands live here. Everything is idempotent: a second run only
# re-checks what the first installed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# As root the sandboxes are OCI containers, which reach the state directory from
# inside a user namespace: it must not sit under a 0700 home, so it goes to /var/lib.
STATE ?= $(if $(filter 0,$(shell id -u)),/var/lib/ironclaw-dev,$(CURDIR)/state)
# Where built sandbox images live; empty: $$IRONCLAW_IMAGE_CACHE, else ~/.cache/ironclaw/images.
SANDBOX_IMAGE_CACHE ?=

.PHONY: run test venv image lint typecheck bench bench-quick chaos clean

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

# The sealed sandbox image, built from this checkout (a cache hit when nothing changed)
# and pinned in $(STATE), where the daemon checks it before every launch.
image: $(STAMP)
	$(VENV)/bin/ironclaw-controlplane build-sandbox --state-dir $(STATE) \
		$(if $(SANDBOX_IMAGE_CACHE),--cache-dir $(SANDBOX_IMAGE_CACHE))

lint: $(STAMP)
	$(VENV)/bin/ruff check ironclaw sandbox_agent bench tests
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy ironclaw

# Benchmarks (bench/README.md). `bench` runs the four suites in full, one after the
# other, and writes bench/results/<suite>-<host>-<date>.{json,md,png}; `bench-quick`
# runs a reduced version of each (under 5 minutes in all) into bench/results/quick/.
bench: $(STAMP)
	$(VENV)/bin/python -m bench sandbox
	$(VENV)/bin/python -m bench queue
	$(VENV)/bin/python -m bench scale
	$(VENV)/bin/python -m bench api

bench-quick: $(STAMP)
	$(VENV)/bin/python -m bench all --quick --out bench/results/quick > /dev/null

# The chaos suite (bench/README.md): webhook chats while the control plane and agents
# are killed, under process, runc and runsc; over 100 control-plane kills under runsc.
# Counts events lost and doubled and measures recovery; results in bench/results/.
chaos: $(STAMP)
	$(VENV)/bin/python -m bench chaos

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
