# Two commands on a fresh machine:  `make`  (set up + run the CPU default)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= configs/smollm2-cpu.yaml
SWEEP  ?= configs/sweeps/smollm2-cpu.yaml
# CPU machines: torch 2.13.0 (the CPU build where a local wheel exists). GPU boxes: TORCH=torch.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

REHEARSAL ?= runs/rehearsal
ONLY      ?=   # pytest -k expression: part of the rehearsal, e.g. ONLY='end_to_end and qwen3-4b and not released'

.PHONY: all setup run experiments test rehearsal test-slow benchmark lab
all: run

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $@

run: setup          ## every notebook in order with papermill, cached per stage
	$(BIN)/python -m boomerang.pipeline --config $(CONFIG)

experiments: setup  ## the paper's baselines and ablations (configs/sweeps/), hours on 2 cores
	$(BIN)/python -m boomerang.pipeline.experiments --sweep $(SWEEP)

test: setup         ## the suite CI runs (< 10 minutes on 2 cores), one worker per core
	$(BIN)/python -m pytest -n auto --dist worksteal

rehearsal: setup    ## every paper preset end to end on tiny stand-ins of its hub models and data, offline
	rm -rf $(REHEARSAL) && mkdir -p $(REHEARSAL)
	HF_HOME=$(abspath $(REHEARSAL))/hf NLTK_DATA=$(abspath $(REHEARSAL))/hf/nltk_data HF_HUB_OFFLINE=1 \
	HF_DATASETS_OFFLINE=1 REHEARSAL_DIR=$(abspath $(REHEARSAL)) $(BIN)/python -m pytest -n auto --dist loadgroup \
	-m rehearsal tests/rehearsal \
	$(if $(ONLY),-k "$(ONLY)")

test-slow: setup    ## end-to-end checks on the real teacher (minutes)
	$(BIN)/python -m pytest -m slow

benchmark: setup    ## distillation tokens/s, sweep time and peak memory, recorded in docs/benchmarks.md
	$(BIN)/python scripts/benchmark.py --config $(CONFIG) --write docs/benchmarks.md

lab: setup
	$(BIN)/jupyter lab notebooks/
