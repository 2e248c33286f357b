# The two commands of the README: `make demo` (install + the main job end to end) and `make test`.
# uv and pip read their caches from the environment (UV_CACHE_DIR, PIP_CACHE_DIR), which make passes on:
# `UV_CACHE_DIR=$(mktemp -d) make demo` is a first run with nothing cached (bench/first_run.py).
# Every environment installs from a hashed lock in requirements/ (requirements/README.md): .venv from
# requirements/main.lock (torch 2.14.1, torchvision 0.29.1, ...), the tool venvs from theirs. uv does the
# resolving (`make lock`) and the installing. Override the interpreter with `make PYTHON=python3.12 ...`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS  ?= .tools
UV     := $(TOOLS)/bin/uv
LOCKS  := requirements

.PHONY: install demo test test-fast lint bench docs contracts clean labelstudio-venv datumaro-venv tool-venvs mlflow-venv lock check-locks

# uv reads no pip configuration: hand it the extra indexes and wheel folders pip is set up with (a local
# package mirror, where the machine has one). Every file is checked against the lock's hashes whichever
# index serves it, so taking the best match across indexes is safe.
PIP_INDEXES := $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)
PIP_LINKS   := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
UV_SOURCES  := $(foreach u,$(PIP_INDEXES),--extra-index-url $(u)) $(foreach d,$(PIP_LINKS),--find-links $(d)) \
               --index-strategy unsafe-best-match
# `uv pip sync`: the venv becomes exactly the lock (extra packages removed), every file hash-checked.
UV_SYNC     = $(UV) pip sync --quiet --require-hashes $(UV_SOURCES)
LOCK_FLAGS  := --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
               --custom-compile-command "make lock"

install: $(STAMP)

$(UV): $(LOCKS)/locker.lock
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv --without-pip $(TOOLS)
	$(PYTHON) -m pip --python $(TOOLS)/bin/python install --quiet --require-hashes -r $(LOCKS)/locker.lock
	touch $@

$(STAMP): pyproject.toml $(LOCKS)/main.lock $(UV)
	test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV_SYNC) --python $(BIN)/python $(LOCKS)/main.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Re-resolve every lock, keeping the versions already locked; upgrade one package with
# `make lock UPGRADE="--upgrade-package mlflow"` (or UPGRADE=--upgrade for everything).
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra test --extra dev --extra deploy -c $(LOCKS)/pins.txt \
	  $(LOCK_FLAGS) $(UPGRADE) -o $(LOCKS)/main.lock
	$(UV) pip compile pyproject.toml --extra deploy -c $(LOCKS)/pins.txt -c $(LOCKS)/main.lock \
	  $(LOCK_FLAGS) -o $(LOCKS)/deploy.lock
	for env in label-studio datumaro mlflow locker; do \
	  $(UV) pip compile $(LOCKS)/$$env.in $(LOCK_FLAGS) $(UPGRADE) -o $(LOCKS)/$$env.lock || exit 1; done
	# the npm environment: package.json pins exact versions; the lock adds what they pull in, with integrity hashes
	npm install --prefix $(LOCKS)/grafana-schema --package-lock-only --no-audit --no-fund --silent

# Every built venv against its lock: names each package missing, extra or at another version.
check-locks: install
	$(BIN)/python -m tests.tools.locks

demo: install
	$(BIN)/segpipe demo

# Two test processes (pytest-xdist) on CI's two cores: most of the suite's wall time is waiting on the
# servers and worker processes tests start. Tests that share a session server (Label Studio) are one
# xdist group; each process has Redis databases of its own (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not integration"

# ruff (rules, line length and per-file exceptions in pyproject.toml [tool.ruff]) over the code, tests and
# benchmarks, then mypy over segpipe and workers ([tool.mypy]). Either failing fails the target.
lint: install
	$(BIN)/ruff check segpipe workers tests bench docs
	$(BIN)/mypy

# The documentation site (mkdocs-material) into site/; the reference pages are generated from the code
# (docs/hooks/reference.py). CI builds it with --strict: a broken link or anchor fails.
# The architecture as code: import-linter's layers and forbidden imports ([tool.importlinter] in
# pyproject.toml), then no import circle spanning two packages (tests/tools/import_cycles.py).
contracts: install
	$(BIN)/lint-imports
	$(BIN)/python -m tests.tools.import_cycles

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

# A real MLflow tracking server for the tracking tests, in its own venv: its dependency pins are not
# ours, and segpipe talks to it over REST only.
MLFLOW_VENV ?= $(or $(SEGPIPE_MLFLOW_VENV),.venvs/mlflow)

mlflow-venv: $(MLFLOW_VENV)/.installed

$(MLFLOW_VENV)/.installed: $(LOCKS)/mlflow.lock $(UV)
	test -x $(MLFLOW_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(MLFLOW_VENV)
	$(UV_SYNC) --python $(MLFLOW_VENV)/bin/python $(LOCKS)/mlflow.lock
	touch $@

clean:
	rm -rf $(VENV) $(TOOLS) .venvs .pytest_cache .hypothesis demo_out runs site

# -- review pages: Debian's chromium for the browser tests (tests/api/pages), driven by Playwright's Python
# API with executable_path=/usr/bin/chromium. Never `playwright install`: nothing is downloaded at run time.
# Grafana's own dashboard types (@grafana/schema) and the TypeScript compiler that checks
# deploy/grafana/segpipe.json against them (tests/test_grafana_dashboard.py); exact versions, from npm.
GRAFANA_SCHEMA ?= $(TOOLS)/grafana-schema
.PHONY: grafana-schema
grafana-schema: $(GRAFANA_SCHEMA)/.installed

$(GRAFANA_SCHEMA)/.installed: requirements/grafana-schema/package.json requirements/grafana-schema/package-lock.json
	mkdir -p $(GRAFANA_SCHEMA)
	cp requirements/grafana-schema/package.json requirements/grafana-schema/package-lock.json $(GRAFANA_SCHEMA)/
	# npm ci: exactly the lock, every tarball checked against its integrity hash
	npm ci --prefix $(GRAFANA_SCHEMA) --no-audit --no-fund --silent
	touch $@

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

$(LABEL_STUDIO_VENV)/.installed: $(LOCKS)/label-studio.lock $(UV)
	test -x $(LABEL_STUDIO_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(LABEL_STUDIO_VENV)
	$(UV_SYNC) --python $(LABEL_STUDIO_VENV)/bin/python $(LOCKS)/label-studio.lock
	touch $@

datumaro-venv: $(DATUMARO_VENV)/.installed

$(DATUMARO_VENV)/.installed: $(LOCKS)/datumaro.lock $(UV)
	test -x $(DATUMARO_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(DATUMARO_VENV)
	$(UV_SYNC) --python $(DATUMARO_VENV)/bin/python $(LOCKS)/datumaro.lock
	touch $@
