# The two commands: `make demo` (the main job on the embedded model) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# The Jericho files the tests play: ../shared/jericho-games beside the clone (CI), else fetched once into the cache.
SHARED_GAMES := $(abspath ../shared/jericho-games)
export JITRL_BENCH_GAMES ?= $(if $(wildcard $(SHARED_GAMES)),$(SHARED_GAMES),$(HOME)/.cache/jitrl-bench/jericho-games)

.PHONY: setup setup-vllm games lock demo test test-fast lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh requirements/main.lock
	bash scripts/setup.sh
	touch $(STAMP)

# A CPU build of vLLM in its own venv (.venv-vllm, with a jitrl-bench CLI of its own) for policy=vllm in process and
# the vLLM tests; GPU machines use pip install '.[vllm]'.
setup-vllm:
	bash scripts/setup_vllm.sh

# Resolve every dependency afresh in scratch venvs and rewrite requirements/*.lock (then make setup installs them).
lock:
	bash scripts/lock.sh

demo: setup
	$(BIN)/jitrl-bench run experiment=demo

# The game files the suite needs, verified; fetched with `games download` when absent (that needs the network).
games: setup
	@$(BIN)/jitrl-bench games verify >/dev/null 2>&1 || { \
	  echo "fetching the Jericho game files into $$JITRL_BENCH_GAMES (jitrl-bench games download)"; \
	  $(BIN)/jitrl-bench games download >$(VENV)/games-download.log 2>&1 || { \
	    echo "no Jericho game files: the download failed (see $(VENV)/games-download.log); put them in" \
	      "../shared/jericho-games or set JITRL_BENCH_GAMES to a folder holding them" >&2; exit 1; }; }

# Two pytest-xdist workers; modules sharing the vLLM server or Ray stay in one (tests/conftest.py: SHARED_GROUPS).
PYTEST := $(BIN)/pytest -q -n 2

test: setup setup-vllm games
	$(PYTEST) --durations=25 tests

# The inner loop: no vLLM, no Ray.
test-fast: setup games
	$(PYTEST) -m "not slow and not vllm and not ray" --durations=10 tests

lint: setup
	$(BIN)/ruff check jitrl_bench tests scripts
	$(BIN)/ruff format --check jitrl_bench tests scripts
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format jitrl_bench tests scripts
	$(BIN)/ruff check --fix jitrl_bench tests scripts

# Speed and memory goals (about 11 minutes): memory overhead, candidate scoring against the floor, a step's time split,
# episodes per minute locally and on 1, 2, 4 Ray workers (and one memory shared by two, as a stream or a service).
bench: setup
	$(BIN)/jitrl-bench bench memory --sizes 1000,10000,100000
	$(BIN)/jitrl-bench bench policy
	$(BIN)/jitrl-bench bench run
	$(BIN)/jitrl-bench bench scale

clean:
	rm -rf $(VENV) .venv-vllm .pytest_cache .mypy_cache .ruff_cache
