# physgm: `make run` (install + main job), `make test` (install + tests), `make bench`.
# Installation happens once: the stamp file is rebuilt only when its inputs change.
PY := .venv/bin/python
STAMP := .venv/.installed
export RAY_AUTH_MODE ?= disabled
export MLFLOW_DISABLE_TELEMETRY ?= true
export DS_ACCELERATOR ?= cpu
export RAY_USAGE_STATS_ENABLED ?= 0
export TOKENIZERS_PARALLELISM ?= false
# Idle OpenMP threads must not spin on a busy 2-core machine (10-40x slowdowns measured).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install run test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install.sh
	bash scripts/install.sh
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m physgm run --config configs/quickstart.yaml

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m physgm bench mpm --json
	$(PY) -m physgm bench render --json
	$(PY) -m physgm bench data --json
	$(PY) -m physgm bench reward --json
	$(PY) -m physgm bench pretrain --json
	$(PY) -m physgm bench dpo --json
	$(PY) -m physgm bench serve --json

clean:
	rm -rf .venv runs
