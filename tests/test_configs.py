"""Every shipped config composes and passes its checks, overlays included, so no config rots; and a non-editable
install (`pip install .`, what a user of the wheel gets) carries the configs and composes them too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.config import GROUPS, choices, compose_config
from jitrl_bench.paths import CONFIG_DIR
from jitrl_bench.run.spec import build_spec

REPO = Path(__file__).resolve().parents[1]
GAMES = os.environ.get("JITRL_BENCH_GAMES") or str(REPO.parent / "shared" / "jericho-games")
TINY = ["run.episodes=1", "run.max_steps=1", "run.progress=false"]
NEEDS = {  # what an option needs to compose here: a required value, or where this machine keeps the game files
    ("policy", "hf"): ["policy.model=smollm2"],
    ("env", "jericho"): [f"env.rom_dir={GAMES}"],
}


def every_option() -> list[tuple[str, str]]:
    return [(group, option) for group in GROUPS for option in choices(group)]


def test_every_group_has_its_options_and_overlays_exist() -> None:
    assert {"demo", "smoke"} <= set(choices("experiment"))
    assert {group: len(choices(group)) > 0 for group in GROUPS} == dict.fromkeys(GROUPS, True)


@pytest.mark.parametrize(("group", "option"), every_option(), ids=lambda x: str(x))
def test_every_config_composes_and_passes_its_checks(group: str, option: str) -> None:
    if (group, option) == ("env", "jericho") and not Path(GAMES).is_dir():
        pytest.skip("Jericho game files not found (../shared/jericho-games or $JITRL_BENCH_GAMES)")
    composed = compose_config([f"{group}={option}", *NEEDS.get((group, option), []), *TINY])
    spec = build_spec(composed)
    assert spec.run.episodes == 1 and spec.run.max_steps == 1  # the tiny budget wins over every overlay
    assert spec.env.task_names() and spec.agent.name
    assert [b.name for b in spec.baselines] == [n for n in spec.run.baselines if n != spec.agent.name]


def test_smoke_overlay_runs_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "experiment=smoke", f"run.dir={tmp_path / 'r'}"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "r" / "episodes.jsonl").read_text().splitlines()]
    assert sorted((r["agent"], r["episode"], r["policy"]) for r in rows) == [
        (agent, e, "uniform") for agent in ("jitrl", "static") for e in (0, 1)
    ]
    config = (tmp_path / "r" / "config.yaml").read_text()
    assert "baselines:\n  static:" in config and "versions:" in config  # baselines and versions are recorded


def test_config_command_prints_the_resolved_config() -> None:
    result = CliRunner().invoke(app, ["config", "agent=jitrl_paper", "run.baselines=[static,jitrl]"])
    assert result.exit_code == 0, result.output
    assert "_target_: jitrl_bench.agents.jitrl_paper.JitRLPaperConfig" in result.output
    assert "jitrl:\n    _target_: jitrl_bench.agents.jitrl.JitRLConfig" in result.output  # a baseline, in full


@pytest.mark.slow
def test_a_non_editable_install_ships_and_composes_every_config(tmp_path: Path) -> None:
    """`pip install .` into a scratch venv that borrows this venv's dependencies (no downloads), run elsewhere."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "jitrl_bench", source / "jitrl_bench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    found = subprocess.run([str(venv / "bin" / "python"), "-c", where], capture_output=True, text=True, check=True)
    site = Path(found.stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # dependencies only
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    shutil.rmtree(source)  # nothing may come from the source tree any more
    script = f"""
import json
from jitrl_bench.config import GROUPS, choices, compose_config
from jitrl_bench.run.spec import build_spec
from jitrl_bench.paths import CONFIG_DIR
composed = []
for group in GROUPS:
    for option in choices(group):
        extra = {json.dumps({f"{g}={o}": v for (g, o), v in NEEDS.items()})}.get(f"{{group}}={{option}}", [])
        build_spec(compose_config([f"{{group}}={{option}}", *extra, "run.episodes=1"]))
        composed.append(f"{{group}}={{option}}")
print(json.dumps({{"config_dir": str(CONFIG_DIR), "composed": composed}}))
"""
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["config_dir"]).is_relative_to(site)  # the wheel's own copy, not this checkout's
    assert Path(report["config_dir"]) != CONFIG_DIR
    assert sorted(report["composed"]) == sorted(f"{g}={o}" for g, o in every_option())


BEFORE_THE_MOVE = Path(__file__).parent / "data" / "config-before-the-move.yaml"
"""config.yaml of `run env=textworld policy=uniform agent=static run.episodes=1 run.max_steps=1`, as written before the
package took its present rooms (its env and memory classes under their old modules): the file, not a copy made here."""


def test_a_run_written_before_the_move_keeps_its_hash_and_builds() -> None:
    """The hash over the old file equals the one the file records and the one today's composition of the same command
    gives (so `run` resumes it), and its env and memory build from the old names. Mutant (tried): the hash taken over
    today's module names: all three hashes part."""
    from omegaconf import DictConfig, OmegaConf

    from jitrl_bench.config import config_hash, instantiate_group
    from jitrl_bench.envs.text.textworld import TextWorldConfig
    from jitrl_bench.memory.store import MemoryConfig
    from jitrl_bench.run.spec import load_spec

    old = OmegaConf.load(BEFORE_THE_MOVE)
    assert isinstance(old, DictConfig) and old.env._target_ == "jitrl_bench.envs.textworld.TextWorldConfig"
    recorded = str(old._meta.config_hash)
    del old["_meta"]
    today = load_spec(["env=textworld", "policy=uniform", "agent=static", "run.episodes=1", "run.max_steps=1"])
    assert config_hash(old) == recorded == config_hash(today.raw)
    assert isinstance(instantiate_group("env", old.env), TextWorldConfig)
    assert isinstance(instantiate_group("memory", old.memory), MemoryConfig)
