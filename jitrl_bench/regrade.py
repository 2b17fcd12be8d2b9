"""`jitrl-bench regrade RUN_DIR`: grade a finished web run again from its files alone (answers + HARs), offline.

episodes.jsonl is never rewritten (it is the run's commit log): the new grades go to regrade.csv beside it, with the
recorded grade on each row, and the table says how many agree. Useful after a grader fix, or to audit a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import track
from rich.table import Table

from jitrl_bench.config import instantiate_group
from jitrl_bench.contract import EnvConfig
from jitrl_bench.envs.webarena import Ungradable
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.results.tables import read_config
from jitrl_bench.run.rundir import existing_run


def _local_har(run_dir: Path, artifacts: dict[str, Any]) -> dict[str, Any]:
    """The HAR where the run left it, else in this run directory's har/ (a copied or moved run)."""
    har = Path(str(artifacts.get("har", "")))
    if har.name and not har.is_file() and (run_dir / "har" / har.name).is_file():
        return {**artifacts, "har": str(run_dir / "har" / har.name)}
    return artifacts


def regrade(run_dir: Path, console: Console | None = None) -> pd.DataFrame:
    """Re-grade every graded episode of `run_dir`; writes regrade.csv and returns its rows."""
    console = console or Console()
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml): pass the folder `jitrl-bench run` printed")
    config = read_config(run_dir)
    if not isinstance(config, dict) or "env" not in config:
        raise UserError(f"{run_dir / 'config.yaml'} has no env section: not a jitrl-bench run config")
    env: EnvConfig = instantiate_group("env", OmegaConf.create(config["env"]))
    regrader = env.regrader()
    if regrader is None:
        raise UserError(f"env {env.name!r} keeps nothing to re-grade: only WebArena runs store answers and HARs")
    episodes = [r for r in existing_run(run_dir).finished() if r.status in ("ok", "ungraded") and r.artifacts]
    if not episodes:
        raise UserError(f"{run_dir}: no graded web episodes to re-grade (episodes.jsonl has none with artifacts)")
    rows = []
    for record in track(episodes, description="re-grading", console=console, transient=True):
        regraded: float | None
        try:
            regraded, note = regrader.regrade(_local_har(run_dir, record.artifacts)), ""
        except (InfraError, Ungradable, OSError, ValueError) as error:
            regraded, note = None, str(error).splitlines()[0]
        if regraded is None and not note:
            note = "needs the live page (program_html): not re-gradable offline"
        rows.append({
            "task": record.task, "episode": record.episode, "agent": record.agent, "status": record.status,
            "recorded": record.score if record.status == "ok" else None,
            "regraded": regraded, "note": note,
            "agree": regraded is not None and record.status == "ok" and abs(regraded - record.score) < 1e-9,
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.to_csv(run_dir / "regrade.csv", index=False)
    console.print(summary_table(frame, run_dir))
    return frame


def summary_table(frame: pd.DataFrame, run_dir: Path) -> Table:
    table = Table(title=f"regrade of {run_dir.name}")
    columns = ("agent", "episodes", "recorded success", "regraded success", "agree", "were ungraded", "not re-gradable")
    for column in columns:
        table.add_column(column, justify="left" if column == "agent" else "right")
    for agent, group in frame.groupby("agent", sort=True):
        recorded = group[group.status == "ok"]
        graded = group[group.regraded.notna()]
        table.add_row(
            str(agent), str(len(group)), f"{(recorded.recorded >= 1).mean():.3f}" if len(recorded) else "-",
            f"{(graded.regraded >= 1).mean():.3f}" if len(graded) else "-",
            f"{int(group.agree.sum())}/{len(recorded)}", str(int((group.status == "ungraded").sum())),
            str(len(group) - len(graded)),
        )  # fmt: skip
    return table
