"""`policy.dtype=auto`: `jitrl-bench config` and `doctor` say what it became on this machine and why; a CPU whose
torch kernels run below AVX-512 (`ATEN_CPU_CAPABILITY=avx2`, as on an AVX2-only CPU) gets float32."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.policies.dtype import choose
from tests.processes import REPO


def config_lines(capability: str | None) -> list[str]:
    """`jitrl-bench config`; with a capability, in a fresh process (torch reads ATEN_CPU_CAPABILITY once, at load)."""
    if capability is None:  # as this process runs
        result = CliRunner().invoke(app, ["config"])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()
    proc = subprocess.run(
        [sys.executable, "-m", "jitrl_bench", "config"],
        cwd=REPO,
        env={**os.environ, "ATEN_CPU_CAPABILITY": capability},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("capability", ["avx2", None])
def test_config_shows_what_auto_chose_and_why(capability: str | None) -> None:
    """Mutant tried: `native_bf16` ignoring torch's cpu capability (only the CPU's flags) picks bfloat16 here under
    avx2 (this machine has AVX512-BF16), which fails the avx2 case."""
    lines = config_lines(capability)
    said = [line for line in lines if line.startswith("# policy.dtype: ")]
    assert len(said) == 1, lines
    dtype = [line.split(":", 1)[1].strip() for line in lines if line.startswith("  dtype: ")]
    if capability == "avx2":
        assert said[0].startswith("# policy.dtype: float32 (auto: no fast bf16, cpu capability AVX2"), said
        assert dtype == ["float32"]  # config.yaml (and the config's hash) hold the dtype that runs, not `auto`
    else:  # this machine as it is (as this process sees it): the choice `doctor` reports
        assert said[0] == f"# policy.dtype: {choose('auto', 'cpu')}"
        assert dtype == [choose("auto", "cpu").name]


def test_doctor_reports_the_auto_dtype() -> None:
    from jitrl_bench.doctor import checks

    rows = {row.part: row for row in checks()}
    assert rows["policy.dtype=auto on cpu"].detail == str(choose("auto", "cpu"))
    assert " (auto: " in rows["policy.dtype=auto on cpu"].detail


def test_a_set_dtype_is_kept() -> None:
    assert choose("float32", "cuda").name == "float32" and choose("bfloat16", "cpu").name == "bfloat16"
    assert choose("auto", "mps").name == "float32"  # bf16 is not known to be faster there


@pytest.mark.parametrize(
    ("flags", "wanted"),
    [({"avx512_bf16": True}, "float32"), ({"avx512_bf16": True, "amx_bf16": True}, "bfloat16"), ({}, "float32")],
)
def test_only_amx_tiles_make_cpu_bf16_the_choice(monkeypatch: pytest.MonkeyPatch, flags: dict, wanted: str) -> None:
    """The CPU's flags are faked (the machine is outside the subject), torch's capability set to AVX512. AVX512-BF16
    without AMX was measured 1.4x slower in bfloat16 than in float32 (`bench run`). Mutant tried: accepting
    avx512_bf16 alone picks bfloat16 in the first case."""
    import torch

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert choose("auto", "cpu").name == wanted
