# The two commands of the README: `make demo` (install + the main job end to end) and `make test`.
# Everything installs into ./.venv with the pinned versions in constraints.txt (torch 2.14.1,
# torchvision 0.29.1, ...). Override the interpreter with `make PYTHON=python3.12 ...`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean mlflow-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: install
	$(BIN)/segpipe demo

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not integration"

bench: install
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

# A real MLflow tracking server for the tracking tests, in its own venv: its dependency pins are not
# ours, and segpipe talks to it over REST only.
MLFLOW_VENV    ?= .venv-mlflow
MLFLOW_VERSION ?= 3.17.2

mlflow-venv: $(MLFLOW_VENV)/.installed

$(MLFLOW_VENV)/.installed:
	test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet "mlflow==$(MLFLOW_VERSION)"
	touch $@

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) .pytest_cache .hypothesis demo_out runs
