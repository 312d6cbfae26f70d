# `make demo`, `make test` and `make docs` each set up .venv from scratch (if needed) and run.
# TORCH: the torch wheel to install first. 2.13.0 is a local CPU wheel on our build machines;
# elsewhere pick what suits your hardware, e.g. `make test TORCH=torch`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all lint docs bench bench-dist clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[all]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/derl ppo --env-id CartPole-v1 --seed 0 --threads 1  # 1 thread: as fast here, and no crawl on a busy core

# -n auto: pytest-xdist, one worker process per core (one torch thread each: tests/conftest.py).
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n auto

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n auto -m "slow or not slow"

lint: $(VENV)/.installed
	$(BIN)/ruff check derl tests benchmarks docs/gen_flags.py
	$(BIN)/ruff format --check derl tests benchmarks docs/gen_flags.py
	$(BIN)/mypy derl

# The site (docs/, mkdocs.yml) into site/; --strict: any warning fails the build.
# NO_MKDOCS_2_WARNING: mute mkdocs-material's banner about MkDocs 2.0.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_ppo.py --variants sync async envpool compile
	$(BIN)/python benchmarks/bench_offpolicy.py --variants sync compile

# Data-parallel scaling (1 vs 2 processes) and the cost of one gloo all-reduce: on a quiet machine.
bench-dist: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_distributed.py
	OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc-per-node 2 benchmarks/bench_allreduce.py

clean:
	rm -rf $(VENV) runs site
