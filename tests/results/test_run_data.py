"""Runs you can query: `jitrl_bench.open_run` and `jitrl-bench export --format parquet` on a run the CLI played, checked
against the run's own summary.csv and steps files, read back by DuckDB; a received run that lies is refused."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import jitrl_bench
from jitrl_bench.cli import app
from jitrl_bench.records import SCHEMA_VERSION
from jitrl_bench.results.export import COLUMNS, episode_columns
from jitrl_bench.results.run_data import TABLES

REPO = Path(__file__).resolve().parents[2]
RUN = ["policy=uniform", "run.progress=false", "run.episodes=3", "run.max_steps=4", "run.seed=5"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("query") / "run"
    code, output = cli("run", *RUN, f"run.dir={run_dir}")
    assert code == 0, output
    return run_dir


def test_open_run_gives_the_numbers_of_summary_csv_and_every_decision_of_the_steps_files(played: Path) -> None:
    run = jitrl_bench.open_run(played)
    assert run.schema_version == SCHEMA_VERSION
    assert yaml.safe_load((played / "config.yaml").read_text())["_meta"]["schema_version"] == SCHEMA_VERSION
    summary = pd.read_csv(played / "summary.csv").set_index(["task", "agent"])
    means = run.episodes.groupby(["task", "agent"]).score.mean()
    assert means.to_dict() == pytest.approx(summary.mean_score.to_dict())
    assert run.episodes.groupby(["task", "agent"]).size().to_dict() == summary.episodes.to_dict()

    files = sorted((played / "steps").rglob("*.jsonl"))
    steps = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(run.steps) == len(steps) == int(run.episodes.steps.sum())
    assert len(run.decisions) == sum(len(s["decision"]["candidates"]) for s in steps)
    assert len(run.neighbours) == sum(len(s["decision"]["neighbours"]) for s in steps)
    chosen = run.decisions[run.decisions.chosen]  # one chosen candidate per step, the action the step took
    joined = chosen.merge(run.steps, on=["task", "agent", "episode", "step"])
    assert len(chosen) == len(run.steps) and (joined.text == joined.action).all()
    jitrl = run.decisions[run.decisions.agent == "jitrl"]
    assert (jitrl.z_prime - jitrl.z).abs().gt(0).any()  # the bias is in the table, not only in the file
    memory_lines = (played / "memory" / "jitrl" / "entries.jsonl").read_text().splitlines()
    assert len(run.memory) == len(memory_lines) == int(run.episodes[run.episodes.agent == "jitrl"].steps.sum())
    assert set(run.memory.episode_uid) <= set(run.episodes.episode_uid)


def test_export_is_read_by_duckdb_with_the_same_numbers(played: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    code, output = cli("export", str(played), "-o", str(out))
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)  # no part file left
    run = jitrl_bench.open_run(played)
    frames = {"episodes": run.episodes, "steps": run.steps, "decisions": run.decisions,
              "neighbours": run.neighbours, "memory": run.memory}  # fmt: skip
    db = duckdb.connect()
    for table in TABLES:
        (count,) = db.execute(f"SELECT count(*) FROM '{out / table}.parquet'").fetchone() or (None,)
        assert count == len(frames[table]), table
    rows = db.execute(
        f"SELECT task, agent, avg(score), count(*) FROM '{out}/episodes.parquet' GROUP BY task, agent"
    ).fetchall()
    summary = pd.read_csv(played / "summary.csv").set_index(["task", "agent"])
    for task, agent, mean, n in rows:
        assert mean == pytest.approx(summary.mean_score[(task, agent)]) and n == summary.episodes[(task, agent)]
    (picked,) = db.execute(f"SELECT count(*) FROM '{out}/decisions.parquet' WHERE chosen").fetchone() or (None,)
    assert picked == len(run.steps)

    for sweep in ("beta", "k"):  # two sweeps both hold a run named `run`: the column tells them apart
        _copy(played, tmp_path / sweep / "run")
    code, output = cli("export", str(tmp_path / "beta" / "run"), str(tmp_path / "k" / "run"), "-o", str(out))
    assert code == 0, output
    runs = db.execute(f"SELECT run, count(*) FROM '{out}/episodes.parquet' GROUP BY run ORDER BY run").fetchall()
    assert runs == [("beta/run", len(run.episodes)), ("k/run", len(run.episodes))]


def test_a_received_run_that_lies_is_refused_in_one_line(played: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not the run's")
    linked = tmp_path / "linked"
    _copy(played, linked)
    os.symlink(outside, linked / "steps" / "planted.jsonl")
    code, output = cli("export", str(linked), "-o", str(tmp_path / "out1"))
    assert code == 2 and "symbolic link" in output and "Traceback" not in output, output

    newer = tmp_path / "newer"
    _copy(played, newer)
    config = (newer / "config.yaml").read_text()
    (newer / "config.yaml").write_text(config.replace(f"schema_version: {SCHEMA_VERSION}", "schema_version: 99"))
    code, output = cli("export", str(newer), "-o", str(tmp_path / "out2"))
    assert code == 2 and "schema_version 99" in output and "upgrade" in output, output

    broken = tmp_path / "broken"
    _copy(played, broken)
    step_file = next((broken / "steps").rglob("*.jsonl"))
    step_file.write_text(step_file.read_text() + "not json\n")
    code, output = cli("export", str(broken), "-o", str(tmp_path / "out3"))
    assert code == 2 and "is not a JSON object" in output, output
    assert not (tmp_path / "out3" / "episodes.parquet").exists()  # nothing half-written under a final name


def test_every_exported_column_is_in_the_schema_page() -> None:
    """Mutant (tried): a column added to COLUMNS without a row in docs/run-files.md fails here."""
    page = (REPO / "docs" / "run-files.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(\w+)`", page))
    columns = {name for cols in COLUMNS.values() for name, _ in cols} | {name for name, _ in episode_columns()}
    assert not columns - documented, f"columns missing from docs/run-files.md: {sorted(columns - documented)}"
    assert f"Schema version **{SCHEMA_VERSION}**" in page


def _copy(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
