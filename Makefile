# The two commands of the README: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The stamp is named after the requirements' and pyproject's content, so editing them reinstalls.
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha1sum | cut -c1-12)
PORT   ?= 8501
TOWER_DATA ?= .tower
# No usage telemetry from MLflow: the registry's users did not ask for it (and this network is closed).
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: run test seed reseed lint install browser proxy java bench-smoke

install: $(STAMP)

# Then the tower itself, editable: $(BIN)/tower runs this checkout's services/ as it is now (a copy
# would go stale at the next edit), and `tower demo serve` finds app.py beside it.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

# The demo, then its monitoring results (idempotent: only new or provisional days are recomputed).
seed: $(STAMP)
	$(BIN)/python -m services.cli demo seed
	$(BIN)/python -m services.cli monitor run

reseed: $(STAMP)
	$(BIN)/python -m services.cli demo seed --force
	rm -f $(TOWER_DATA)/tower.db
	$(BIN)/python -m services.cli monitor run

# The app on http://localhost:$(PORT), with the demo's local OIDC provider on 127.0.0.1:9400.
run: seed
	$(BIN)/python -m services.cli demo serve --port $(PORT)

# Browser tests drive Debian's Chromium (never a downloaded browser): install it when missing and
# this user may; otherwise those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed: the browser tests will be skipped"; fi; }

# The replica tests (tests/deploy) put two app processes behind Debian's HAProxy with deploy/haproxy.cfg:
# installed the same way (root + apt-get), else those tests skip and say why. Only the binary is used;
# no system service is started.
proxy:
	@command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	  else echo "haproxy is not installed: the replica tests will be skipped"; fi; }

# The Spark warehouse tests (tests/stores/test_spark_warehouse.py) run the pyspark wheel's master, workers
# and Thrift server on Java 17: installed the same way when missing, else those tests skip and say why.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else echo "java is not installed: the Spark warehouse tests will be skipped"; fi; }

# Lint and types first, then two passes: the whole suite on the embedded stores, then the modules
# marked `both_backends` again on the production backends (PostgreSQL warehouse and tower state, MLflow
# server with basic auth and a service account; tests/support/production.py). Both passes always
# run; any step failing fails.
test: $(STAMP) browser proxy java
	$(BIN)/ruff check .
	$(BIN)/mypy
	@status=0; \
	$(BIN)/python -m pytest || status=1; \
	echo "== second pass: production backends (PostgreSQL, MLflow server with basic auth) =="; \
	$(BIN)/python -m pytest --backend production -m both_backends || status=1; \
	exit $$status

# The load benchmark's smoke test (2 browser sessions); timing-sensitive, so not part of `make test`.
bench-smoke: $(STAMP) browser
	$(BIN)/python -m pytest -m load tests/bench/test_load_bench_smoke.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
