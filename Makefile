# The two commands of the README: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The stamp is named after the requirements' content, so editing them reinstalls.
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
PORT   ?= 8501
# No usage telemetry from MLflow: the registry's users did not ask for it (and this network is closed).
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: run test seed reseed lint install

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

seed: $(STAMP)
	$(BIN)/python -m services.cli demo seed

reseed: $(STAMP)
	$(BIN)/python -m services.cli demo seed --force

run: seed
	TOWER_DEMO=1 $(BIN)/streamlit run app.py --server.port $(PORT) --server.address localhost

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
