# gengym: one command runs the main job, one runs the tests. Both create the
# project virtualenv (.venv) on first use and install the locked set of
# versions in requirements/ (see `make lock`), so a fresh clone installs
# what the lock says whatever the registries serve by then.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch is enough for everything here; set TORCH_SPEC to your
# own choice (e.g. TORCH_SPEC=torch for a CUDA build) to change it.
TORCH_SPEC ?= torch==2.13.0
OUT ?= runs/demo
PYTEST_ARGS ?=
# The virtualenv of `make lock` and `make test-latest`: the newest versions
# pyproject.toml allows.
LATEST ?= .venv-latest

BIN := $(VENV)/bin
STAMP := $(VENV)/.gengym-installed
LOCK := requirements/lock.txt
BOOTSTRAP := requirements/bootstrap.txt
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: demo test test-latest lock latest-venv lint bench bench-gpu docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip, setuptools and wheel first (pinned; they also build every source
# package), then torch and the lock in one resolution, then the project
# without dependencies; finally check that the virtualenv is the lock.
$(STAMP): pyproject.toml $(LOCK) $(BOOTSTRAP) | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_QUIET) -r $(BOOTSTRAP)
	$(BIN)/python -m pip install $(PIP_QUIET) --build-constraint $(BOOTSTRAP) "$(TORCH_SPEC)" -r $(LOCK)
	$(BIN)/python -m pip install $(PIP_QUIET) --build-constraint $(BOOTSTRAP) --no-deps -e .
	$(BIN)/python -m pip check
	$(BIN)/python tools/lock.py check --python $(BIN)/python
	touch $(STAMP)

## demo: run the main job on built-in defaults (outputs under runs/demo)
demo: $(STAMP)
	$(BIN)/gengym demo --out $(OUT)

## test: run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

## latest-venv: a fresh $(LATEST) with the newest versions pyproject.toml allows
latest-venv:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install $(PIP_QUIET) --upgrade pip setuptools wheel
	$(LATEST)/bin/python -m pip install $(PIP_QUIET) --upgrade --upgrade-strategy eager "$(TORCH_SPEC)" -e ".[all]"

## lock: rewrite requirements/ from the newest versions pyproject.toml allows
lock: latest-venv
	$(LATEST)/bin/python tools/lock.py write --python $(LATEST)/bin/python

## test-latest: the suite under the newest versions pyproject.toml allows
test-latest: latest-venv
	$(LATEST)/bin/python tools/lock.py diff --python $(LATEST)/bin/python
	GENGYM_UNLOCKED=1 $(LATEST)/bin/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## bench: the env benchmarks (one CPU core each); bench-gpu: generation and PPO (needs a GPU)
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_generalpoints.py
	$(BIN)/python benchmarks/bench_virl.py --repeat 3

bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_generation.py
	$(BIN)/python benchmarks/bench_ppo.py

docs: $(STAMP)
	$(BIN)/python docs/build_env_docs.py

clean:
	rm -rf $(VENV) $(LATEST) runs .pytest_cache
