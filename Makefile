# Clausework: `make demo` runs the whole stack and extracts the bundled sample; `make test` tests it.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) deploy/local/stack.py
SAMPLE := samples/sample-contract.pdf
SERVICES := postgres s3 temporal store parser llm gateway worker

.PHONY: help setup llm-server bench bench-quick train crossval eval eval-llm demo up down ps protos test test-unit drills lint fmt clean $(addprefix logs-,$(SERVICES))

help:
	@echo "make demo    start the stack and extract $(SAMPLE)"
	@echo "make test    run unit + integration tests (starts and stops its own stack)"
	@echo "make bench   benchmarks + load on the bench stack profile; rewrites BENCHMARKS.md"
	@echo "make drills  fault drills: a batch in flight while each component fails (also part of make test)"
	@echo "make train | crossval | eval N=20 | eval-llm   the embedded model and its measurements"
	@echo "make up | down | ps | logs-<name> | protos | lint"

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	scripts/setup.sh

setup: $(VENV)/.installed

# llama.cpp's llama-server + small GGUF models, cached in ~/.cache/clausework: the real
# OpenAI-compatible endpoint the tests run the openai backend against (first build ~10 min).
llm-server:
	scripts/setup_llm_server.sh

up: setup
	$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "nothing to stop"; fi
	@if [ -x $(PY) ]; then $(STACK) down --profile test >/dev/null; fi

ps: setup
	$(STACK) ps

$(addprefix logs-,$(SERVICES)):
	tail -n 200 -F .run/dev/logs/$(@:logs-%=%).log

# The embedded model, from ../shared/cuad (writes clausework/model/cuad-sparse-lr).
train: setup $(VENV)/.train-installed
	$(PY) -m training.train

# 5-fold cross-validated quality of the embedded model, scored by ../shared/eval/score_cuad.py.
crossval: setup $(VENV)/.train-installed
	$(PY) -m training.crossval --folds 5

# N contracts from ../shared/cuad through the running stack's gateway, scored (make eval N=50).
N ?= 20
eval: up
	$(PY) -m scripts.eval_cuad --n $(N)

# The OpenAI-compatible backend with a local Qwen2.5-0.5B on LLM_PER_FOLD contracts of each of folds
# 0 and 1, each handled by the fold model that never saw it: embedded alone, verify (fusion cross-fitted
# between the folds), the oracle judge, retrieval and chunks; scores, tokens, wall time (docs/llm-backends.md).
LLM_PER_FOLD ?= 10
LLM_RUNS ?= verify,oracle,retrieval,chunks
eval-llm: setup $(VENV)/.train-installed
	scripts/setup_llm_server.sh --with-qwen
	$(PY) -m scripts.eval_llm --per-fold $(LLM_PER_FOLD) --runs $(LLM_RUNS) --concurrency 4 --streams-per-fold 2 --max-output-tokens 384

demo: up
	$(PY) -m clausework.cli --address 127.0.0.1:50051 extract $(SAMPLE)

protos: setup
	$(PY) scripts/gen_protos.py
	cd protos && ../$(VENV)/bin/buf lint

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd protos && ../$(VENV)/bin/buf lint

# Benchmark-only dependencies (pyproject's `bench` extra: pdfplumber, the parser benchmark's baseline).
$(VENV)/.train-installed: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev,train]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $@

# Every benchmark of BENCHMARKS.md on its own stack (profile `bench`, up at the start, down at the end);
# rewrites BENCHMARKS.md. Run it on an otherwise idle machine: the figures are wall-clock.
bench: setup llm-server $(VENV)/.bench-installed
	$(PY) -m bench

# Small counts, a few minutes: checks the harness end to end; figures are not meaningful.
bench-quick: setup $(VENV)/.bench-installed
	$(PY) -m bench --quick --output .run/BENCHMARKS.quick.md

test: setup llm-server
	$(PY) -m pytest

drills: setup
	$(PY) -m pytest tests/drills

test-unit: setup
	$(PY) -m pytest -m "not integration"

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down
	rm -rf .run
