# detpipe — every target sets itself up: it creates/reuses .venv and installs pyproject.toml's pins.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/local
RUN_ARGS ?=
COMPILED ?= runs/compiled
KFP_HOST ?=
# image names are spelled once, in detpipe/images.py
IMAGE ?= $(shell $(BIN)/python -c "from detpipe.images import TRAIN_IMAGE as i; print(i)" 2>/dev/null)
SERVE_IMAGE ?= $(shell $(BIN)/python -c "from detpipe.images import SERVE_IMAGE as i; print(i)" 2>/dev/null)
SERVE_GPU_IMAGE ?= $(shell $(BIN)/python -c "from detpipe.images import SERVE_GPU_IMAGE as i; print(i)" 2>/dev/null)
JETSON_IMAGE ?= $(shell $(BIN)/python -c "from detpipe.images import JETSON_IMAGE as i; print(i)" 2>/dev/null)
SERVE_MODEL ?= $(RUN_DIR)/store/models/yolov8n-synth
# `make run` signs its releases with this development key (pipelines/local_run.py); not for production
RELEASE_KEY ?= $(RUN_DIR)/release-keys/release.pub
SERVE_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers; whole test files go to one worker (module fixtures and in-file order hold)
PYTEST_WORKERS ?= 2

.PHONY: help venv run sweep al serve compile submit images test test-deps lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)  ## create/refresh .venv from pyproject.toml

run: $(STAMP)  ## the whole train_to_edge pipeline locally (kfp.local, synthetic data; RUN_DIR=runs/local)
	$(BIN)/detpipe pipeline run --quick --workdir $(RUN_DIR) $(RUN_ARGS)

sweep: $(STAMP)  ## the data-scaling sweep locally, quick profile
	$(BIN)/detpipe pipeline run --pipeline small_data_sweep --quick --workdir $(RUN_DIR)-sweep $(RUN_ARGS)

al: $(STAMP)  ## the active-learning experiment locally, quick profile (uncertainty vs random, 2 seeds)
	$(BIN)/detpipe pipeline run --pipeline active_learning --quick --workdir $(RUN_DIR)-al $(RUN_ARGS)

serve: $(STAMP)  ## serve the newest local release from `make run` on localhost:8080 (SERVE_MODEL=...)
ifeq ($(filter --allow-unsigned,$(SERVE_ARGS)),)
	@test -f $(RELEASE_KEY) || { echo "no $(RELEASE_KEY): \`make run\` makes it and signs its releases with it (or RELEASE_KEY=...)"; exit 2; }
	$(BIN)/detpipe serve --model $(SERVE_MODEL) --release-key $(RELEASE_KEY) $(SERVE_ARGS)
else
	$(BIN)/detpipe serve --model $(SERVE_MODEL) $(SERVE_ARGS)
endif

compile: $(STAMP)  ## compile both pipelines for a cluster into $(COMPILED)
	$(BIN)/detpipe pipeline compile --out $(COMPILED) --image $(IMAGE)

submit: $(STAMP)  ## submit train_to_edge to KFP_HOST (token from KF_PIPELINES_TOKEN)
	@test -n "$(KFP_HOST)" || { echo "set KFP_HOST=https://<kubeflow>/pipeline"; exit 2; }
	$(BIN)/detpipe pipeline submit --host $(KFP_HOST) --image $(IMAGE) $(RUN_ARGS)

images:  ## build the container images (needs a Docker engine)
	docker build -f docker/Dockerfile.train -t $(IMAGE) .
	docker build -f docker/Dockerfile.serve -t $(SERVE_IMAGE) .
	docker build -f docker/Dockerfile.serve-gpu -t $(SERVE_GPU_IMAGE) .
	docker build -f docker/Dockerfile.jetson -t $(JETSON_IMAGE) .
	docker build -f docker/Dockerfile.edge --build-arg JETSON_IMAGE=$(JETSON_IMAGE) -t $(subst detpipe-jetson,detpipe-edge,$(JETSON_IMAGE)) .

test: $(STAMP) test-deps  ## run the test suite
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# System binaries the tests run for real (tests skip with the reason where they are missing):
# Prometheus for the canary analysis queries (tests/deploy), Chromium for the HTML pages a pipeline
# run shows (tests/report, driven by playwright with executable_path: no browser is downloaded).
# Installed only as root with apt.
TEST_PACKAGES = prometheus chromium
test-deps:
	@missing=""; for pkg in $(TEST_PACKAGES); do command -v "$$pkg" >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing (Debian packages) for tests/deploy and tests/report"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$$missing >/dev/null; \
	fi

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
