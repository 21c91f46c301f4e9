# gengym: one command runs the main job, one runs the tests. Both create the
# project virtualenv (.venv) and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch is enough for everything here; set TORCH_SPEC to your
# own choice (e.g. TORCH_SPEC=torch for a CUDA build) to change it.
TORCH_SPEC ?= torch==2.13.0
OUT ?= runs/demo
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.gengym-installed

.PHONY: demo test lint bench bench-gpu docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

## demo: run the main job on built-in defaults (outputs under runs/demo)
demo: $(STAMP)
	$(BIN)/gengym demo --out $(OUT)

## test: run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

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
	rm -rf $(VENV) runs .pytest_cache
