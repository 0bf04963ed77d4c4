# detpipe — every target sets itself up: it creates/reuses .venv and installs pyproject.toml's pins.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: help venv run test lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)  ## create/refresh .venv from pyproject.toml

run: $(STAMP)  ## run the pipeline locally on synthetic data (RUN_DIR=runs/demo)
	$(BIN)/detpipe data synth --out $(RUN_DIR)/data
	$(BIN)/detpipe subsets --annotations $(RUN_DIR)/data/annotations/instances_train2017.json \
		--out $(RUN_DIR)/subsets
	$(BIN)/detpipe data yolo --annotations $(RUN_DIR)/data/annotations/instances_train2017.json \
		--images-dir $(RUN_DIR)/data/images/train2017 \
		--val-annotations $(RUN_DIR)/data/annotations/instances_val2017.json \
		--val-images-dir $(RUN_DIR)/data/images/val2017 \
		--subsets $(RUN_DIR)/subsets --out $(RUN_DIR)/yolo
	@echo "subset report: $(RUN_DIR)/subsets (summary.json, class_distribution.csv, *.png)"

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
