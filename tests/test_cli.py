"""The CLI as a user meets it: bad input is one line and exit 2; a killed run resumes exactly once; sweeps aggregate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.memory.store import ExperienceMemory

REPO = Path(__file__).resolve().parents[1]
FAST = ["policy=uniform", "run.progress=false"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_unknown_game_is_reported_and_the_other_games_go_on(tmp_path: Path) -> None:
    games = os.environ.get("JITRL_BENCH_GAMES") or str(REPO.parent / "shared" / "jericho-games")
    if not Path(games, "detective.z5").exists():
        pytest.skip("Jericho game files not found (../shared/jericho-games or $JITRL_BENCH_GAMES)")
    run_dir = tmp_path / "r"
    code, output = cli(
        "run", *FAST, "env=jericho", "env.game=[zorkk1,detective]", f"env.rom_dir={games}", "run.episodes=1",
        "run.max_steps=3", "run.baselines=[]", f"run.dir={run_dir}",
    )  # fmt: skip
    assert code == 1, output
    assert "zorkk1" in output and "zork1" in output  # names the bad game and suggests the close match
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert {(r["task"], r["status"]) for r in rows} == {("zorkk1", "error"), ("detective", "ok")}


@pytest.mark.slow
def test_kill_during_a_run_then_resume_plays_each_episode_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "jitrl_bench",
        "run",
        *FAST,
        "run.episodes=6",
        "run.max_steps=8",
        f"run.dir={run_dir}",
    ]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    episodes = run_dir / "episodes.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not episodes.exists() or len(episodes.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(episodes.read_text().splitlines())
    assert 3 <= killed_at < 12, "the kill must land in the middle of the run"
    assert subprocess.run(args, cwd=REPO, capture_output=True).returncode == 0
    rows = [json.loads(line) for line in episodes.read_text().splitlines()]
    keys = [(r["agent"], r["episode"]) for r in rows]
    assert sorted(keys) == [(a, e) for a in ("jitrl", "static") for e in range(6)]  # none twice, none lost
    committed = {r["episode_uid"] for r in rows}
    memory = ExperienceMemory(run_dir / "memory" / "jitrl", 384, gamma=0.9, committed=committed.__contains__)
    assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")


@pytest.mark.slow
def test_a_resumed_run_still_reads_the_memory_it_loaded_from_another_run(tmp_path: Path) -> None:
    """memory.load_from's entries and notes belong to episodes of the other run: a resume must keep them (it once
    dropped them as uncommitted), so the replayed episode reads what it read in a run that was never interrupted."""
    source, whole, resumed = tmp_path / "source", tmp_path / "whole", tmp_path / "resumed"
    budget = ["run.max_steps=6", "run.baselines=[full_history]"]
    assert cli("run", *FAST, *budget, "run.episodes=2", f"run.dir={source}")[0] == 0
    transfer = [*FAST, *budget, "run.episodes=2", f"memory.load_from={source}"]
    assert cli("run", *transfer, f"run.dir={whole}")[0] == 0
    assert cli("run", *transfer, f"run.dir={resumed}")[0] == 0
    log = resumed / "episodes.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")  # as if killed after the first commit
    code, output = cli("run", *transfer, f"run.dir={resumed}")
    assert code == 0 and "1 episodes already finished" in " ".join(output.split())

    def read(run: Path) -> list[list[object]]:
        steps = (run / "steps" / "tw-simple-7" / "jitrl" / "1.jsonl").read_text().splitlines()
        return [json.loads(line)["decision"]["neighbours"] for line in steps]

    assert read(resumed) == read(whole)
    assert any(read(whole)) and min(n["id"] for step in read(whole) for n in step) < 12  # imported entries read

    def shown(run: Path) -> str:  # what full_history put in the prompt of episode 1: the source's episodes too
        first = (run / "steps" / "tw-simple-7" / "full_history" / "1.jsonl").read_text().splitlines()[0]
        return str(json.loads(first)["decision"]["notes"]["guidance_context"])

    assert shown(resumed) == shown(whole) and shown(whole).count("Outcome:") >= 2  # more than its own episode 0


def test_resume_with_another_config_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    assert cli("run", *FAST, "run.episodes=1", "run.max_steps=2", f"run.dir={run_dir}")[0] == 0
    code, output = cli("run", *FAST, "run.episodes=1", "run.max_steps=2", "agent.beta=3", f"run.dir={run_dir}")
    assert code == 2 and "another config" in output


@pytest.mark.slow
def test_sweep_prints_one_table_of_all_runs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    code, output = cli(
        "sweep", *FAST, "agent.beta=0.5,2", "agent.k=5,10", "run.episodes=2", "run.max_steps=4", f"run.dir={sweep_dir}"
    )
    assert code == 0, output
    runs = sorted(p.name for p in sweep_dir.iterdir() if (p / "episodes.jsonl").exists())
    assert runs == ["0", "1", "2", "3"]
    import pandas as pd

    table = pd.read_csv(sweep_dir / "summary.csv")
    assert {"agent.beta", "agent.k"} <= set(table.columns)
    jitrl = table[table.agent == "jitrl"]
    assert sorted(zip(jitrl["agent.beta"], jitrl["agent.k"], strict=True)) == [(0.5, 5), (0.5, 10), (2.0, 5), (2.0, 10)]
    assert (table.agent == "static").sum() == 4  # every job runs the baselines beside the agent
    assert (table.episodes == 2).all()
    code, output = cli("table", str(sweep_dir))
    assert code == 0 and "4 runs" in output


def test_games_list_and_doctor_run() -> None:
    code, output = cli("games", "list")
    assert code == 0 and "zork1" in output
    from jitrl_bench.doctor import checks

    rows = {row.part: row for row in checks()}
    # what make setup installs is found (embedded model, embedder, TextWorld, Chromium); what it does not is missing
    for part in ("policy: SmolLM2-135M (embedded)", "embedder: all-MiniLM-L6-v2", "textworld", "chromium (web envs)"):
        assert rows[part].ok, rows[part]
    assert rows["vllm"].ok == (REPO / ".venv-vllm" / "bin" / "jitrl-bench").is_file()  # the CPU build, beside us
    assert ".venv-vllm" in rows["vllm"].detail or not rows["vllm"].ok
    code, output = cli("doctor")
    assert code == 0 and "embedder" in output


def test_paper_profile_runs_end_to_end_and_writes_strict_json(tmp_path: Path) -> None:
    run_dir = tmp_path / "paper"
    code, output = cli("run", *FAST, "agent=jitrl_paper", "run.episodes=3", "run.max_steps=6", f"run.dir={run_dir}")
    assert code == 0, output
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert sorted({r["agent"] for r in rows}) == ["jitrl_paper", "static"]
    steps = (run_dir / "steps" / "tw-simple-7" / "jitrl_paper" / "2.jsonl").read_text().splitlines()
    decisions = [json.loads(line, parse_constant=_reject)["decision"] for line in steps]
    assert any(d["neighbours"] for d in decisions), "the third episode must retrieve the first two"
    for d in decisions:
        assert {"lambda", "w"} <= set(d["notes"]) and 0.05 <= d["notes"]["lambda"] <= 0.8
        assert d["probs"][d["index"]] == 1.0  # the paper acts by argmax of p + w·Ã
        assert d["z_prime"][d["index"]] == max(d["z_prime"])


def _reject(token: str) -> float:
    raise AssertionError(f"non-standard JSON constant {token} in a steps file")


@pytest.mark.slow
def test_concurrent_episodes_give_the_sequential_results(tmp_path: Path) -> None:
    """N episodes in flight change the order of episodes.jsonl, never its content (memory stays exactly-once)."""
    contents = []
    for concurrency in (1, 3):
        run_dir = tmp_path / f"c{concurrency}"
        code, output = cli(
            "run", *FAST, "run.episodes=4", "run.max_steps=6", f"run.concurrency={concurrency}", f"run.dir={run_dir}"
        )
        assert code == 0, output
        rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
        actions = {
            (r["agent"], r["episode"]): [
                json.loads(s)["action"]
                for s in (run_dir / "steps" / r["task"] / r["agent"] / f"{r['episode']}.jsonl").read_text().splitlines()
            ]
            for r in rows
        }
        memory = ExperienceMemory(run_dir / "memory" / "jitrl", 384, gamma=0.9)
        assert len(memory) == sum(r["steps"] for r in rows if r["agent"] == "jitrl")
        contents.append((sorted((r["agent"], r["episode"], r["score"], r["steps"]) for r in rows), actions))
    assert contents[0] == contents[1]


@pytest.mark.slow
def test_main_job_path_with_the_embedded_model(tmp_path: Path) -> None:
    """`jitrl-bench run` with its defaults (SmolLM2, TextWorld, JitRL + static), cut to a tiny budget."""
    run_dir = tmp_path / "main"
    code, output = cli("run", "run.progress=false", "run.episodes=2", "run.max_steps=4", f"run.dir={run_dir}")
    assert code == 0, output
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert {r["policy"] for r in rows} == {"SmolLM2-135M-Instruct"} and all(r["tokens"] > 0 for r in rows)
    first = json.loads((run_dir / "steps" / "tw-simple-7" / "jitrl" / "0.jsonl").read_text().splitlines()[0])
    z = first["decision"]["z"]
    assert all(v < 0 for v in z) and len(set(z)) > 1  # real, distinct log-probs from the model
    assert "jitrl" in output and "static" in output and (run_dir / "curve.png").exists()
    config = OmegaConf.load(run_dir / "config.yaml")  # policy.dtype=auto: what it became here, and why
    assert str(config._meta.resolved["policy.dtype"]).startswith(f"{config.policy.dtype} (auto: ")


def test_games_download_fetches_verifies_and_reports(tmp_path: Path) -> None:
    games = Path(os.environ.get("JITRL_BENCH_GAMES") or REPO.parent / "shared" / "jericho-games")
    if not (games / "detective.z5").exists():
        pytest.skip("Jericho game files not found (../shared/jericho-games or $JITRL_BENCH_GAMES)")
    source = tmp_path / "mirror"
    source.mkdir()
    (source / "detective.z5").write_bytes((games / "detective.z5").read_bytes())
    (source / "zork1.z5").write_bytes(b"\x05" + b"not zork" * 100)  # wrong md5: must fail, others go on
    dest = tmp_path / "roms"
    code, output = cli("games", "download", "--dest", str(dest), "--base-url", source.as_uri(), "detective", "zork1")
    assert code == 1, output
    assert (dest / "detective.z5").read_bytes() == (games / "detective.z5").read_bytes()
    assert not (dest / "zork1.z5").exists() and "failed" in output and "md5" in output


def test_bench_memory_writes_its_csv(tmp_path: Path) -> None:
    out = tmp_path / "memory.csv"
    code, output = cli("bench", "memory", "--sizes", "500,2000", "--queries", "40", "--out", str(out))
    assert code == 0, output
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns[:5]) == ["entries", "index", "p50_ms", "p99_ms", "bytes_per_entry"]
    assert table.entries.tolist() == [500, 2000] and (table.p50_ms > 0).all() and (table.p99_ms >= table.p50_ms).all()
    assert (table.bytes_per_entry > 0).all()
