# The two commands of the README: `make demo` (install + the main job end to end) and `make test`.
# Everything installs into ./.venv with the pinned versions in constraints.txt (torch 2.14.1,
# torchvision 0.29.1, ...). Override the interpreter with `make PYTHON=python3.12 ...`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean labelstudio-venv datumaro-venv tool-venvs mlflow-venv

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
	rm -rf $(VENV) $(MLFLOW_VENV) .venvs .pytest_cache .hypothesis demo_out runs

# -- review pages: Debian's chromium for the browser tests (tests/pages), driven by Playwright's Python
# API with executable_path=/usr/bin/chromium. Never `playwright install`: nothing is downloaded at run time.
.PHONY: browser-deps
browser-deps:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; fi

# -- annotation tools' own venvs (issue 9): the tests import every export with them --------------------
# Their pins conflict with ours (numpy, pydantic, pillow), so each lives in its own venv; the tests find
# them at .venvs/<tool> or at $SEGPIPE_LABEL_STUDIO_VENV / $SEGPIPE_DATUMARO_VENV.
LABEL_STUDIO_VENV ?= $(or $(SEGPIPE_LABEL_STUDIO_VENV),.venvs/label-studio)
DATUMARO_VENV     ?= $(or $(SEGPIPE_DATUMARO_VENV),.venvs/datumaro)

tool-venvs: labelstudio-venv datumaro-venv

labelstudio-venv: $(LABEL_STUDIO_VENV)/.installed

$(LABEL_STUDIO_VENV)/.installed: tests/tools/labelstudio-requirements.txt
	test -x $(LABEL_STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/python -m pip install --quiet -r tests/tools/labelstudio-requirements.txt
	touch $@

datumaro-venv: $(DATUMARO_VENV)/.installed

$(DATUMARO_VENV)/.installed: tests/tools/datumaro-requirements.txt
	test -x $(DATUMARO_VENV)/bin/python || $(PYTHON) -m venv $(DATUMARO_VENV)
	$(DATUMARO_VENV)/bin/python -m pip install --quiet -r tests/tools/datumaro-requirements.txt
	touch $@
