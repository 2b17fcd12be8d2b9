"""Every agent against the run's reference agent (`run.compare_to`, static by default), paired on the same task, seed
and episode index: the mean difference with its interval, the paired test's p-value, and a verdict. Per task, and
pooled over the tasks (on the normalised score, so tasks of different maxima weigh alike) when there are several."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jitrl_bench.results.uncertainty import LEVEL, paired_difference
from jitrl_bench.run import received
from jitrl_bench.run.settings import DEFAULT_REFERENCE

POOLED = "all tasks"
COMPARISON = ["task", "agent", "reference", "metric", "pairs", "difference", "low", "high", "p_value", "verdict"]
PAIR_KEY = ["task", "seed", "episode"]
PART_COLUMNS = ("split", "phase")
"""The columns a protocol's rows carry (`results/parts.py`), kept first when a comparison is shown."""
DIFFERENCE = f"difference [{LEVEL:.0%} interval]"


def reference_of(run_dir: Path) -> str | None:
    """The agent the run compares every other with: its config's `run.compare_to` (null: none), static when unset."""
    if not (run_dir / "config.yaml").is_file():
        return DEFAULT_REFERENCE
    run = received.read_config(run_dir).get("run")
    value = run.get("compare_to", DEFAULT_REFERENCE) if isinstance(run, dict) else DEFAULT_REFERENCE
    return value if isinstance(value, str) and value not in ("", "null") else None


def compare(episodes: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """One row per (task, agent ≠ reference), then one pooled row per agent when the run has several tasks."""
    if episodes.empty or reference is None or reference not in set(episodes.agent):
        return pd.DataFrame(columns=COMPARISON)
    ok = episodes[episodes.status == "ok"]
    base = ok[ok.agent == reference]
    rows = []
    agents = [a for a in dict.fromkeys(episodes.agent) if a != reference]
    tasks = list(dict.fromkeys(episodes.task))
    for agent in agents:
        pairs = ok[ok.agent == agent].merge(base, on=PAIR_KEY, suffixes=("", "_ref"))
        for task in tasks:
            rows.append(_row(task, agent, reference, "score", pairs[pairs.task == task], "score"))
        if len(tasks) > 1:
            rows.append(_row(POOLED, agent, reference, "norm_score", pairs, "norm_score"))
    return pd.DataFrame(rows, columns=COMPARISON)


def _row(task: str, agent: str, reference: str, metric: str, pairs: pd.DataFrame, column: str) -> dict[str, object]:
    result = paired_difference(pairs[column].to_numpy(), pairs[f"{column}_ref"].to_numpy())
    return {
        "task": task,
        "agent": agent,
        "reference": reference,
        "metric": metric,
        "pairs": result.n,
        "difference": result.difference,
        "low": result.low,
        "high": result.high,
        "p_value": result.p_value,
        "verdict": result.verdict,
    }


def shown(comparison: pd.DataFrame) -> pd.DataFrame:
    """The comparison as it reads in a table: the difference with its interval in one cell."""
    out = comparison[[*(c for c in PART_COLUMNS if c in comparison), "task", "agent", "metric", "pairs"]].copy()
    out[DIFFERENCE] = [
        with_interval(d, lo, hi, signed=True)
        for d, lo, hi in zip(comparison.difference, comparison.low, comparison.high, strict=True)
    ]
    out["p"] = [_p(p) for p in comparison.p_value]
    out["verdict"] = comparison.verdict
    return out


def with_interval(value: float, low: float, high: float, signed: bool = False) -> str:
    """'0.25 [0.1, 0.4]'; the value alone when there is no interval (fewer than two values)."""
    sign = "+" if signed else ""
    if value != value:
        return ""
    if low != low or high != high:
        return f"{value:{sign}.3g}"
    return f"{value:{sign}.3g} [{low:.3g}, {high:.3g}]"


def _p(p: float) -> str:
    if p != p:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"
