#!/usr/bin/env bash
# Create .venv with everything jitrl-bench needs, at the versions pinned in requirements/main.lock (`make lock`
# refreshes them). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=requirements/main.lock

# System packages: a C toolchain (jericho builds frotz from C at install time), Chromium (web envs) and a Java
# runtime (the ScienceWorld and TextWorld Express simulators are jars).
missing=()
for tool in gcc g++ make cmake chromium; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
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
# torch first: pip takes the local CPU wheel for torch==2.13.0; any other way to it pulls a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install "$(grep -E '^torch==' "$LOCK")"
# Every other package exactly as locked, without resolving anything: the lock already holds the whole tree, including
# the packages whose own declared dependencies are wrong for us (miniwob pulls selenium/trio, which breaks jericho's
# valid actions; libwebarena and text-generation pin huggingface-hub<1.0; browsergym-experiments pulls all of
# AgentLab), which `make lock` installs with --no-deps.
$PIP install --no-deps -r "$LOCK"
$PIP install --no-deps -e .
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
