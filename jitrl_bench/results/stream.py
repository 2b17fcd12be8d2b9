"""Forward transfer and forgetting of a `run.protocol=stream` run, from its three phases (`run/protocols.py`), each a
paired difference on the same task, agent and env seed (`results/uncertainty.py`):

- transfer = score in the stream (memory from the tasks before) − score from scratch (the task's own memory only):
  > 0 when what was learned earlier helps. The first task has nothing before it: its transfer is 0 by construction.
- forgetting = score in the stream's last episodes of a task − score on those seeds replayed at the end, memory
  frozen: > 0 when learning later tasks hurt this one. The last task is not replayed.
"""

from __future__ import annotations

import pandas as pd

from jitrl_bench.results.comparison import with_interval
from jitrl_bench.results.uncertainty import paired_difference

MEASURES = (("transfer", "stream", "scratch"), ("forgetting", "stream", "replay"))
COLUMNS = [
    "task",
    "agent",
    *(f"{m}{s}" for m, _, _ in MEASURES for s in ("", "_pairs", "_low", "_high", "_p", "_verdict")),
]
TITLE = "Stream: forward transfer and forgetting, paired on task, agent and env seed"
NOTE = (
    "transfer: stream − scratch (> 0: earlier tasks help) · forgetting: the stream's last episodes of a task − the "
    "same seeds replayed at the end with memory frozen (> 0: later tasks hurt)"
)


def stream_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, agent) of a stream run; empty for any other run."""
    if episodes.empty or "phase" not in episodes:
        return pd.DataFrame(columns=COLUMNS)
    ok = episodes[episodes.status == "ok"]
    stream = ok[ok.phase == "stream"]
    rows = []
    for (task, agent), group in stream.groupby(["task", "agent"], sort=False):
        row: dict[str, object] = {"task": task, "agent": agent}
        for measure, left, right in MEASURES:
            other = ok[(ok.phase == right) & (ok.task == task) & (ok.agent == agent)]
            pairs = (group if left == "stream" else other).merge(other, on="seed", suffixes=("", "_other"))
            result = paired_difference(pairs.score.to_numpy(), pairs.score_other.to_numpy())
            row.update({measure: result.difference, f"{measure}_pairs": result.n, f"{measure}_low": result.low,
                        f"{measure}_high": result.high, f"{measure}_p": result.p_value,
                        f"{measure}_verdict": result.verdict if result.n else ""})  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def stream_shown(table: pd.DataFrame) -> pd.DataFrame:
    out = table[["task", "agent"]].copy()
    for measure, _, _ in MEASURES:
        cells = zip(table[measure], table[f"{measure}_low"], table[f"{measure}_high"], strict=True)
        out[measure] = [with_interval(v, lo, hi, signed=True) for v, lo, hi in cells]
        out[f"{measure} p"] = [f"{p:.3f}" if p == p else "" for p in table[f"{measure}_p"]]
        out[f"{measure} verdict"] = table[f"{measure}_verdict"]
    return out
