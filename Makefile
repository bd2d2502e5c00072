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
# The local model's server (llama-cpp-python) is built from source once, into a wheel
# cache that outlives the venv: a second run, or a fresh venv, installs the cached wheel.
# Keep LLAMA_CPP_VERSION equal to the pin in pyproject.toml's test extra.
LLAMA_CPP_VERSION := 0.3.36
LOCAL_MODEL_WHEELS ?= $(if $(filter 0,$(shell id -u)),/var/cache/ironclaw/wheels,$(HOME)/.cache/ironclaw/wheels)
# A native build may use CPU features (AMX) a VM advertises but faults on: name them.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_WHEEL_STAMP = $(LOCAL_MODEL_WHEELS)/.llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell $(PYTHON) -c 'import sys; print("cp%d%d" % sys.version_info[:2])')

.PHONY: run test test-servers venv image lint typecheck bench bench-quick chaos clean local-model \
	redteam-full deploy-image deploy-test test-long

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

# Built niced (it takes minutes of both cores) and only when the cache lacks it.
$(LLAMA_WHEEL_STAMP): | $(VENV)/bin/pip
	mkdir -p $(LOCAL_MODEL_WHEELS)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" nice -n 10 $(VENV)/bin/pip wheel --quiet --no-deps \
		--wheel-dir $(LOCAL_MODEL_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

# The test extra pins llama-cpp-python; --find-links makes pip take the cached wheel.
$(STAMP): pyproject.toml $(LLAMA_WHEEL_STAMP)
	$(VENV)/bin/pip install --quiet --find-links $(LOCAL_MODEL_WHEELS) -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# A real Matrix homeserver for the Matrix channel's tests (tests/fakes/synapse.py).
# Synapse pins its own versions of libraries the project uses (cryptography), so it
# gets a virtual environment of its own; the tests only talk to it over HTTP.
SYNAPSE_VENV := .venv-synapse
SYNAPSE_VERSION := 1.163.2
SYNAPSE_STAMP := $(SYNAPSE_VENV)/.installed-$(SYNAPSE_VERSION)
$(SYNAPSE_STAMP):
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install --quiet matrix-synapse==$(SYNAPSE_VERSION)
	touch $@

test-servers: $(SYNAPSE_STAMP)

# The local model and its server (docs/operations.md#running-on-a-local-model-air-gapped).
local-model: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ironclaw-controlplane --dev --state-dir $(STATE)

test: $(STAMP) $(SYNAPSE_STAMP)
	$(VENV)/bin/pytest --durations=30

# The long form of the second red-team family (every probe and every negative control,
# under runsc and runc); the suite runs its short form and one negative control.
# Every long form the suite leaves out (pytest marker `long`) but the deploy tests, which
# need podman and the network: plane kills and chaos under every runtime, the whole
# red-team family and its controls, the heavier benchmark self-tests, the disk-cap plane
# test, the channels' figures, session deletion under runsc. Well over an hour.
test-long: $(STAMP) $(SYNAPSE_STAMP)
	$(VENV)/bin/pytest --durations=30 -m long --ignore=tests/deploy

redteam-full: $(STAMP)
	$(VENV)/bin/pytest -m long tests/security/test_redteam_host.py

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
	$(VENV)/bin/pytest -m long tests/e2e/test_plane_kills.py tests/chaos/test_chaos.py
	$(VENV)/bin/python -m bench chaos

# The control-plane OCI image, from Debian's packages and this checkout's wheel (no image
# is pulled); prints its digest (docs/deploy.md#the-control-plane-image).
deploy-image: $(STAMP)
	PYTHON=$(VENV)/bin/python deploy/image/build.sh

# The deploy tests that need podman, mmdebstrap and the network: deploy/install.sh in a
# fresh Debian container, and the image started with podman (docs/deploy.md).
deploy-test: $(STAMP)
	$(VENV)/bin/pytest -m long tests/deploy

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
