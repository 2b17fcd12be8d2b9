"""`jitrl-bench regrade RUN_DIR`: grade a finished web run again from its files alone (answers + HARs), offline.

episodes.jsonl is never rewritten (it is the run's commit log): the new grades go to regrade.csv beside it, with the
recorded grade on each row, and the table says how many agree. Useful after a grader fix, or to audit a run.

The run is data, maybe someone else's: the LLM judge that fuzzy_match / ua_match ask is the reader's (`--judge-url`,
`--judge-key-env`, else $OPENAI_BASE_URL / $OPENAI_API_KEY), never the endpoint or key variable the run's config
names, which would send the reader's key wherever that config points. Only the judge's model is taken from the run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import track
from rich.table import Table

from jitrl_bench import terminal
from jitrl_bench.checks import BadValue
from jitrl_bench.config import instantiate_group
from jitrl_bench.contract import EnvConfig, JudgeChoice, Regrader
from jitrl_bench.errors import InfraError, Ungradable, UserError
from jitrl_bench.files import write_file
from jitrl_bench.run.received import FILE_BYTES, buildable, check_run, read_config
from jitrl_bench.run.rundir import CONFIG, existing_run
from jitrl_bench.terminal import cell

JUDGE_OPTIONS = {"base_url": "--judge-url", "api_key_env": "--judge-key-env", "model": "--judge-model"}


def _local_har(run_dir: Path, artifacts: dict[str, Any]) -> dict[str, Any]:
    """The run's own copy of the HAR (its har/ folder: a copied or moved run), else where the run left it if that is
    a plain file of a sane size (never a device or pipe a crafted record names)."""
    har = Path(str(artifacts.get("har", "")))
    if not har.name:
        return artifacts
    if (run_dir / "har" / har.name).is_file():
        return {**artifacts, "har": str(run_dir / "har" / har.name)}
    if har.is_file() and har.stat().st_size <= FILE_BYTES:
        return artifacts
    return {**artifacts, "har": ""}


def regrade(run_dir: Path, console: Console | None = None, judge: JudgeChoice | None = None) -> pd.DataFrame:
    """Re-grade every graded episode of `run_dir`; writes regrade.csv and returns its rows."""
    console = console or terminal.console()
    check_run(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml): pass the folder `jitrl-bench run` printed")
    config = read_config(run_dir)
    if not isinstance(config.get("env"), dict):
        raise UserError(f"{run_dir / CONFIG} has no env section: not a jitrl-bench run config")
    env_data = dict(config["env"])
    recorded_judge = env_data.pop("judge", None)  # its endpoint and key variable are the run's, not the reader's
    env: EnvConfig = instantiate_group("env", buildable(env_data, "env"))
    regrader = env.regrader()
    if regrader is None:
        raise UserError(f"env {env.name!r} keeps nothing to re-grade: only WebArena runs store answers and HARs")
    _use_judge(regrader, judge or JudgeChoice(), recorded_judge)
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
    write_file(run_dir / "regrade.csv", frame.to_csv(index=False))
    console.print(summary_table(frame, run_dir))
    return frame


def _use_judge(regrader: Regrader, choice: JudgeChoice, recorded: Any) -> None:
    """The reader's judge; of the run's recorded judge only its model, when the reader names none."""
    model = choice.model or (recorded.get("model") if isinstance(recorded, dict) else None)
    try:
        regrader.use_judge(replace(choice, model=None if model is None else str(model)))
    except BadValue as bad:
        option = JUDGE_OPTIONS.get(bad.key, f"env.judge.{bad.key}")
        raise UserError(f"{option} {bad.value}: {bad.allowed}") from None


def summary_table(frame: pd.DataFrame, run_dir: Path) -> Table:
    table = Table(title=cell(f"regrade of {run_dir.name}"))
    columns = ("agent", "episodes", "recorded success", "regraded success", "agree", "were ungraded", "not re-gradable")
    for column in columns:
        table.add_column(column, justify="left" if column == "agent" else "right")
    for agent, group in frame.groupby("agent", sort=True):
        recorded = group[group.status == "ok"]
        graded = group[group.regraded.notna()]
        table.add_row(
            cell(agent), str(len(group)), f"{(recorded.recorded >= 1).mean():.3f}" if len(recorded) else "-",
            f"{(graded.regraded >= 1).mean():.3f}" if len(graded) else "-",
            f"{int(group.agree.sum())}/{len(recorded)}", str(int((group.status == "ungraded").sum())),
            str(len(group) - len(graded)),
        )  # fmt: skip
    return table
