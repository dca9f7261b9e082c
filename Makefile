# Parley: two commands do all set-up on a fresh machine.
#   make demo  - create/reuse .venv, install, build the embedded models, run the demo
#   make test  - create/reuse .venv, install (with dev tools), build the models, run the test suite
# The first run compiles llama.cpp (llama-cpp-python has no wheel): about 10 minutes on 2 cores.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= edge,cloud,build,dev
PYTEST_ARGS ?=

.PHONY: demo test install models lint typecheck bench clean-models

demo: install models
	$(BIN)/parley demo

test: install models
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install:
	@scripts/setup.sh "$(PYTHON)" "$(VENV)" "$(EXTRAS)"

models: install
	$(BIN)/parley models build

lint: install
	$(BIN)/ruff check shared edge cloud models tests
	$(BIN)/mypy

bench: install models
	$(BIN)/parley bench models --json

clean-models:
	rm -rf models/build
