# batch-serving: every target installs what it needs first (fresh machine: Python 3.11 + Java 17).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ROWS ?= 200000
DATE ?= 2026-11-22
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.DEFAULT_GOAL := help
.PHONY: help install demo test lint typecheck clean

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/jobs.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	@command -v java >/dev/null || { echo "java not found: install Java 17 (Spark needs it)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/jobs.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv with the pinned jobs stack and the package (editable)

demo: $(STAMP) ## sample warehouse + demo models in a local registry, then score one date end to end
	$(VENV)/bin/batch-serving demo --rows $(ROWS) --run-date $(DATE)

test: $(STAMP) lint typecheck ## lint, typecheck, then the whole suite (real Spark, real MLflow registry)
	$(PY) -m pytest -q

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src jobs tests bench
	$(VENV)/bin/ruff format --check src jobs tests bench

typecheck: $(STAMP) ## mypy
	$(VENV)/bin/mypy


clean: ## remove generated data (keeps venvs)
	rm -rf data mlruns spark-warehouse metastore_db derby.log bench_results .bench_data

SCALE ?= 2M
.PHONY: bench
bench: $(STAMP) ## scoring benchmark: in-process limit vs arrow_direct vs dataframe vs mlflow spark_udf (SCALE=2M|20M)
	$(PY) bench/score_bench.py --scale $(SCALE)

# ---- packaging for clusters: the project wheel + a relocatable environment archive ----------
WHEEL := dist/batch_serving-0.1.0-py3-none-any.whl
ENV_ARCHIVE := dist/batch-serving-env.tar.gz
PACK_VENV := build/pack-venv
.PHONY: package
package: $(ENV_ARCHIVE) ## build dist/ wheel + venv-pack environment archive (spark-submit --archives)

$(WHEEL): $(STAMP) pyproject.toml $(shell find src -name '*.py')
	rm -rf build/lib dist/*.whl
	$(PY) -m pip wheel -q --no-deps -w dist .

$(ENV_ARCHIVE): $(WHEEL) requirements/jobs.txt
	rm -rf $(PACK_VENV) $(ENV_ARCHIVE)
	$(PYTHON) -m venv --copies $(PACK_VENV)
	$(PACK_VENV)/bin/pip install -q --upgrade pip
	$(PACK_VENV)/bin/pip install -q -c requirements/jobs.txt $(WHEEL)
	$(VENV)/bin/venv-pack -q -p $(PACK_VENV) -o $(ENV_ARCHIVE) --compress-level 1 \
		--exclude 'lib/python3.11/site-packages/pyspark/jars/*'
	@ls -lh $(WHEEL) $(ENV_ARCHIVE)
