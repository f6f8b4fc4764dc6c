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

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
PORT ?= 8000
# apt-get needs root; use sudo when not root (CI runs as root)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install demo test lint typecheck clean serve sql backfill system-deps

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

# Airflow lives in its own venv: its Spark provider pulls pyspark-client, which would break
# the real pyspark of .venv (see ../shared/STACK.md). requirements/airflow.txt is its lock.
# The project goes in without its dependencies: the DAGs import only batch_serving.config,
# whose pydantic, pydantic-settings and PyYAML the lock already has.
$(AIRFLOW_STAMP): requirements/airflow.txt pyproject.toml
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install -q -r requirements/airflow.txt
	$(AIRFLOW_VENV)/bin/pip install -q --no-deps -e .
	touch $(AIRFLOW_STAMP)

system-deps: ## redis-server (lookup store tests), wrk (bench-api), chromium (report render test)
	@if ! command -v redis-server >/dev/null || ! command -v wrk >/dev/null; then \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server wrk \
		|| echo "warning: could not install redis-server/wrk: Redis tests will be skipped"; fi
	@if ! command -v chromium >/dev/null; then \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium \
		|| echo "warning: could not install chromium: the report render test will fail"; fi

# Spark's connector jars (Kafka, Delta, s3a) and a Kafka broker come from Maven Central: each
# pom under jars/ is copied into its lib/ (ignored by git); jars pyspark already ships are dropped.
JARS_STAMP := jars/.fetched
MVN_COPY := mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib
$(JARS_STAMP): jars/pom.xml jars/s3a/pom.xml jars/broker/pom.xml jars/keep-new.sh $(STAMP)
	@command -v mvn >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q maven; } \
		|| { echo "mvn not found and not installable: install Maven 3.8+"; exit 1; }
	rm -rf jars/lib jars/s3a/lib jars/broker/lib
	cd jars && $(MVN_COPY)
	cd jars/s3a && $(MVN_COPY)
	cd jars/broker && $(MVN_COPY)
	pyspark_jars=$$($(PY) -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))'); \
		jars/keep-new.sh jars/lib "$$pyspark_jars" && jars/keep-new.sh jars/s3a/lib "$$pyspark_jars"
	touch $(JARS_STAMP)

.PHONY: jars
jars: $(JARS_STAMP) ## Spark connector jars (Kafka, Delta, s3a) and the Kafka broker from Maven Central, into jars/*/lib

# The driver JVM's class-data sharing archive (src/batch_serving/spark/class_archive.py): a small
# local job's classes, dumped at its JVM's exit; made again when the venv or the jars change
# (a stale archive is refused by the JVM, which then starts as without one).
CLASS_ARCHIVE := jars/cds/driver.jsa
$(CLASS_ARCHIVE): $(STAMP) $(JARS_STAMP)
	$(PY) -m batch_serving.spark.class_archive --out $(CLASS_ARCHIVE)

.PHONY: class-archive
class-archive: $(CLASS_ARCHIVE) ## the driver JVM's class-data sharing archive (a faster JVM start), into jars/cds

install: $(STAMP) $(AIRFLOW_STAMP) $(JARS_STAMP) $(CLASS_ARCHIVE) system-deps ## .venv (jobs stack, editable), .venv-airflow, connector jars, the driver's class archive, redis-server, wrk

demo: $(STAMP) ## sample warehouse + demo models in a local registry, then score one date end to end
	$(VENV)/bin/batch-serving demo --rows $(ROWS) --run-date $(DATE)

EVENTS ?= 3000
.PHONY: demo-stream
DEMO_STREAM ?= fraud
demo-stream: $(STAMP) $(JARS_STAMP) system-deps ## the fraud example live: train, register, Kafka -> windowed stream (Redis) -> block/allow, the API's live answer; DEMO_STREAM=churn: the churn model on EVENTS=3000 plain events
	$(if $(filter churn,$(DEMO_STREAM)),$(PY) -m batch_serving.demo_stream --events $(EVENTS),$(PY) -m batch_serving.fraud_demo)

test: install lint typecheck package docs ## lint, typecheck, docs, then the whole suite (Spark, MLflow, Airflow, Redis, a standalone cluster)
	$(PY) -m pytest -q --durations=15 -m "not connect"
	$(PY) -m pytest -q -m connect  # Spark Connect clients: a process without a classic session

.PHONY: docs
docs: $(STAMP) ## documentation site in site/: docs/gen.py writes the generated pages, mkdocs build --strict
	$(VENV)/bin/ruff check docs && $(VENV)/bin/ruff format --check docs
	$(PY) docs/gen.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict  # not --quiet: it hides warnings from --strict

lint: $(STAMP) ## ruff, and the import contracts of .importlinter (one-way layers; no pyspark in the core)
	$(VENV)/bin/ruff check src jobs tests bench airflow_dags
	$(VENV)/bin/ruff format --check src jobs tests bench airflow_dags
	$(VENV)/bin/lint-imports
	$(PY) airflow_dags/batch_serving_airflow/generate.py --check  # one DAG file per conf/jobs/*.yaml

typecheck: $(STAMP) ## mypy
	$(VENV)/bin/mypy


serve: $(STAMP) ## lookup API over data/output/serving on 127.0.0.1, PORT=8000 (after make demo)
	$(VENV)/bin/batch-serving serve --root data/output/serving --port $(PORT)

Q ?= SELECT ds, model_version, count(*) AS n, avg(score) AS mean_score FROM predictions.churn GROUP BY ds, model_version ORDER BY ds
sql: $(STAMP) ## run SQL over the prediction tables: make sql Q="SELECT ..."
	$(VENV)/bin/batch-serving sql --config conf/jobs/churn.yaml "$(Q)"

FROM ?= 2026-11-20
TO ?= 2026-11-22
backfill: $(STAMP) ## score every date FROM..TO (idempotent), then publish the last
	$(VENV)/bin/batch-serving backfill --config conf/jobs/churn.yaml --from $(FROM) --to $(TO) --publish

clean: ## remove generated data (keeps venvs)
	rm -rf data mlruns spark-warehouse metastore_db derby.log bench_results .bench_data build dist

SCALE ?= 2M
ONLY ?=
.PHONY: report-png
report-png: $(STAMP) ## README screenshot of the latest demo run's report (after make demo; needs chromium)
	$(PY) docs/screenshot.py --config conf/jobs/churn.yaml --out docs/img/report.png

.PHONY: bench
bench: $(STAMP) ## scoring benchmark: in-process limit vs our engines vs mlflow spark_udf, 4 models in one pass, drift on vs off, GX gates' share (SCALE=200k|2M|20M, ONLY=single|multi|drift|gates|whole|s3|onnx|cascade|connect|delta; whole, s3, onnx, cascade, connect and delta only when asked)
	$(PY) bench/score_bench.py --scale $(SCALE) $(if $(ONLY),--only $(ONLY))

ENTITIES ?= 10M
.PHONY: bench-live
bench-live: $(STAMP) system-deps ## embedded ONNX single-row + lookup API live fallback (misses, cache, snapshot hits) + live answers with fresh windowed features (LIVE_ENTITIES=50k|200k|1M, LIVE_ONLY=embedded|api|windowed)
	$(PY) bench/live_bench.py --entities $(or $(LIVE_ENTITIES),200k) $(if $(LIVE_ONLY),--only $(LIVE_ONLY))

.PHONY: bench-stream
bench-stream: $(STAMP) $(JARS_STAMP) ## streaming benchmark: files (latency at RATE=2000 for SECONDS=30, a rate ramp), then Kafka -> Kafka at RATE and 5xRATE, then windowed features Kafka -> Kafka with 100k cards (ONLY=files|kafka|windows)
	$(PY) bench/stream_bench.py --rate $(or $(RATE),2000) --seconds $(or $(SECONDS),30) $(if $(ONLY),--only $(ONLY))

.PHONY: bench-learning
bench-learning: $(STAMP) ## online learning: learner throughput (labelled events/s, one core) and the challenger shadow's cost in a nightly run
	$(PY) bench/learning_bench.py

.PHONY: bench-api
bench-api: $(STAMP) system-deps ## lookup API benchmark: embedded snapshot vs Redis, wrk load, Redis publish rate (ENTITIES=1M|2M|10M, PUBLISH_ONLY=1)
	$(PY) bench/api_bench.py --entities $(ENTITIES) $(if $(PUBLISH_ONLY),--publish-only)

.PHONY: unit
unit: $(STAMP) ## the fast tests only: tests/unit (no JVM, no server, no subprocess; under a minute)
	$(PY) -m pytest -q tests/unit

.PHONY: cluster-test
cluster-test: install package ## only the standalone-cluster test (master + 2 workers on loopback)
	$(PY) -m pytest -q tests/integration/spark/test_cluster.py

# ---- packaging for clusters: the project wheel + a relocatable environment archive ----------
WHEEL := dist/batch_serving-0.1.0-py3-none-any.whl
ENV_ARCHIVE := dist/batch-serving-env.tar.gz
PACK_VENV := build/pack-venv
# The archive is the executors' Python: the core only (scoring, adapters for sklearn/pyfunc,
# casts, storage; mlflow-skinny to fetch models for per_partition loading). No pyspark: Spark
# puts its own pyspark.zip first on its Python workers' path. No API, Great Expectations or
# full MLflow: those run on the driver. Models of other runtimes need their extra on the
# executors too: make package PACK_EXTRAS=onnx (or flavors, or onnx,flavors).
PACK_EXTRAS ?=
# Left out of the archive: tests, pip/setuptools, pyspark's jars, and bytecode (__pycache__,
# about 37 MiB packed; workers compile what they import; a read-only archive directory can
# cache it elsewhere with spark.executorEnv.PYTHONPYCACHEPREFIX)
PACK_EXCLUDES := pyspark/jars/* */tests/* pip/* setuptools/* pkg_resources/* _distutils_hack/*
.PHONY: package
package: $(ENV_ARCHIVE) ## build dist/ wheel + venv-pack environment archive (spark-submit --archives; PACK_EXTRAS=onnx,flavors)

$(WHEEL): $(STAMP) pyproject.toml $(shell find src -name '*.py')
	rm -rf build/lib dist/*.whl
	$(PY) -m pip wheel -q --no-deps -w dist .

$(ENV_ARCHIVE): $(WHEEL) requirements/jobs.txt
	rm -rf $(PACK_VENV) $(ENV_ARCHIVE)
	$(PYTHON) -m venv --copies $(PACK_VENV)
	$(PACK_VENV)/bin/pip install -q --upgrade pip
	$(PACK_VENV)/bin/pip install -q -c requirements/jobs.txt '$(WHEEL)$(if $(PACK_EXTRAS),[$(PACK_EXTRAS)])'
	$(VENV)/bin/venv-pack -q -p $(PACK_VENV) -o $(ENV_ARCHIVE) --compress-level 1 \
		$(foreach p,$(PACK_EXCLUDES),--exclude 'lib/python3.11/site-packages/$(p)') \
		--exclude '*/__pycache__/*'
	@ls -lh $(WHEEL)
	@stat -c %s $(ENV_ARCHIVE) | awk '{printf "$(ENV_ARCHIVE): %.1f MiB (extras: $(or $(PACK_EXTRAS),none))\n", $$1 / 1048576}'
