"""`jitrl-bench bench export`: reading a big run stays streaming. A synthetic run of 10^6 decisions (steps shaped like
JitRL's: 20 candidates with z, Â, z', π* and 10 neighbours each) is exported to Parquet, and, for comparison, loaded
whole through `open_run(...).decisions`; each in a fresh process, whose wall time and peak RSS the OS reports."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from jitrl_bench.bench import publish
from jitrl_bench.contract import Usage
from jitrl_bench.records import SCHEMA_VERSION, Decision, EpisodeRecord, StepRecord
from jitrl_bench.run.rundir import CONFIG, RunDirectory

CANDIDATES, NEIGHBOURS, STEPS = 20, 10, 25
COLUMNS = ["reader", "decisions", "episodes", "run_mb", "seconds", "decisions_per_s", "peak_rss_mb", "output_mb"]
LOAD = "import sys, jitrl_bench; print(len(jitrl_bench.open_run(sys.argv[1]).decisions))"
IMPORTS = "import jitrl_bench.cli, jitrl_bench.results.export, pandas, pyarrow.parquet"


def synthetic_run(path: Path, decisions: int, seed: int = 0) -> int:
    """A run directory with `decisions` candidate rows (episodes of STEPS steps of CANDIDATES candidates); returns the
    episodes written."""
    rng = np.random.default_rng(seed)
    run_dir = RunDirectory(path)
    (path / CONFIG).write_text(f"_meta:\n  run_id: bench\n  config_hash: bench\n  schema_version: {SCHEMA_VERSION}\n")
    episodes = max(1, decisions // (CANDIDATES * STEPS))
    texts = [f"click the button labelled item number {i}" for i in range(CANDIDATES)]
    for e in range(episodes):
        record = EpisodeRecord("task", e, "jitrl", "bench", "bench", e, STEPS, 1.0, 2.0, 0.5, e % 2 == 0, STEPS, 1.0,
                               1.0, 0, f"uid{e}", "bench", "bench")  # fmt: skip
        steps = []
        for s in range(STEPS):
            z = rng.standard_normal(CANDIDATES).round(6).tolist()
            advantage = rng.standard_normal(CANDIDATES).round(6).tolist()
            neighbours = [{"id": i, "similarity": 0.9, "return": 1.0, "action": texts[0]} for i in range(NEIGHBOURS)]
            decision = Decision(texts[s % CANDIDATES], s % CANDIDATES, texts, z, advantage, advantage, advantage,
                                neighbours, usage=Usage(1, 500, 3))  # fmt: skip
            steps.append(StepRecord(s, "sha", texts[s % CANDIDATES], 0.0, 0.0, decision, observation="page " * 40))
        run_dir.write_steps(record, steps)
        run_dir.commit(record)
    return episodes


def timed_child(*argv: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `python argv...` in a fresh process (its output dropped)."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        child = subprocess.Popen([sys.executable, *argv], stdout=null)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"the benchmark's reader failed (exit {child.returncode}): python {' '.join(argv)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux reports KiB


def bench_export(out: Path, decisions: int, console: Console) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="jitrl-bench-export-") as scratch:
        run, exported = Path(scratch) / "run", Path(scratch) / "exported"
        with console.status(f"writing a synthetic run of {decisions:,} decisions"):
            episodes = synthetic_run(run, decisions)
        run_mb = sum(f.stat().st_size for f in run.rglob("*") if f.is_file()) / 2**20
        n = episodes * STEPS * CANDIDATES
        readers = {
            "jitrl-bench export --format parquet": ["-m", "jitrl_bench", "export", str(run), "-o", str(exported)],
            "open_run(run).decisions": ["-c", LOAD, str(run)],
            "imports only": ["-c", IMPORTS],
        }
        for reader, argv in readers.items():
            with console.status(reader):
                seconds, peak = timed_child(*argv)
            counted = 0 if reader == "imports only" else n
            output = sum(f.stat().st_size for f in exported.glob("*.parquet")) / 2**20 if "export" in reader else 0.0
            rows.append({"reader": reader, "decisions": counted, "episodes": episodes if counted else 0,
                         "run_mb": round(run_mb, 1) if counted else 0.0, "seconds": round(seconds, 1),
                         "decisions_per_s": round(counted / seconds), "peak_rss_mb": round(peak),
                         "output_mb": round(output, 1)})  # fmt: skip
    publish(rows, COLUMNS, out, "reading a run of many decisions", console)
    return rows
