"""`doctor` and `games` reach every environment through its config: each `configs/env/*.yaml` says what its env needs
(`EnvConfig.requirements`) and which game files it manages (`EnvConfig.game_files`), asked before the config is
checked, so a machine without the files yet gets rows, not an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.config import choices, unchecked_env
from jitrl_bench.doctor import env_checks
from jitrl_bench.envs.text.alfworld_games import write_sample


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_doctor_shows_what_each_env_config_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ROM folder at all: JerichoConfig's own check would refuse it, yet doctor shows Jericho's need as a row.
    Mutant (tried): building the configs checked (`instantiate_group`) gives an `env=jericho` error row instead."""
    missing = tmp_path / "no-games-here"
    monkeypatch.setenv("JITRL_BENCH_GAMES", str(missing))
    rows = {row.part: row for row in env_checks()}
    assert not rows["jericho ROMs"].ok and str(missing) in rows["jericho ROMs"].detail, rows["jericho ROMs"]
    assert "games download" in rows["jericho ROMs"].fix
    assert rows["textworld"].required and rows["textworld"].ok  # the default run's env: required
    assert not rows["jericho ROMs"].required and not rows["chromium (web envs)"].required
    for choice in choices("env"):  # every env's every need is a row (the WebArena sets share theirs)
        needs = unchecked_env(choice).requirements()
        assert needs and all(need.part in rows for need in needs), choice
    assert not [part for part in rows if part.startswith("env=") and rows[part].fix == "see the detail"]


def test_games_commands_manage_each_envs_files_through_its_config(tmp_path: Path) -> None:
    code, output = cli("games", "list", "--rom-dir", str(tmp_path / "missing"))  # Jericho's, from an unchecked config
    assert code == 0 and "zork1" in output and "ok" not in output.split(), output
    root = write_sample(tmp_path / "alfworld", 1)  # ALFWorld's official layout, one game per task type and split
    code, output = cli("games", "verify", "--env", "alfworld", "--rom-dir", str(root))
    assert code == 0, output
    for split in ("train", "valid_seen", "valid_unseen"):
        assert f"json_2.1.1/{split}" in output and "6 games" in output, output
    code, output = cli("games", "list", "--env", "babyai")
    assert code == 2 and "env=babyai has no game files" in output, output
    code, output = cli("games", "list", "--env", "nosuchenv")
    assert code == 2 and "unknown env 'nosuchenv'" in output, output
