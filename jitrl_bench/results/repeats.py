"""How repeatable a result is, from the replicas of `run.repeats=K` (`run/repeats.py`): pass^k, consistency and the
spread of the replicas' final scores, per (task, agent).

An item is one episode position of a task (episode e of every replica: the same budget and the same amount of
memory behind it). pass^k is the chance that k trials of an item, drawn without replacement from its n = K, all
succeed, averaged over items: C(c, k) / C(n, k) with c successes of n (the unbiased estimator τ-bench reports;
pass^1 is the success rate, and pass^k falls with k as far as success is luck). Consistency is the share of items
whose K trials agree, all successes or all failures. Only items every replica finished are counted.
"""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd

SPREAD = ["final5_mean", "final5_sd", "final5_min", "final5_max"]


def pass_hat_k(successes: np.ndarray, k: int) -> float:
    """Mean over items (rows) of C(c, k) / C(n, k): the chance that k of an item's n trials, drawn without
    replacement, all succeed."""
    items, n = successes.shape
    if items == 0 or not 1 <= k <= n:
        return float("nan")
    counts = successes.sum(axis=1).astype(int)
    return float(np.mean([comb(int(c), k) / comb(n, k) for c in counts]))


def columns(repeats: int) -> list[str]:
    return ["task", "agent", "repeats", "items", *(f"pass^{k}" for k in range(1, repeats + 1)), "consistency", *SPREAD]


def repeat_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, agent) of a repeated run's episodes (with their `repeat` column)."""
    if episodes.empty or "repeat" not in episodes:
        return pd.DataFrame(columns=columns(1))
    ok = episodes[episodes.status == "ok"]
    repeats = int(episodes.repeat.nunique())
    rows = []
    for (task, agent), group in ok.groupby(["task", "agent"], sort=False):
        grid = group.pivot_table(index="episode", columns="repeat", values="success", aggfunc="first")
        grid = grid.reindex(columns=sorted(episodes.repeat.unique())).dropna()  # items every replica finished
        successes = grid.to_numpy(dtype=float)
        agree = successes.all(axis=1) | ~successes.astype(bool).any(axis=1)
        final5 = [g.sort_values("episode").score.tail(5).mean() for _, g in group.groupby("repeat")]
        row: dict[str, object] = {"task": task, "agent": agent, "repeats": len(final5), "items": len(grid)}
        for k in range(1, repeats + 1):
            row[f"pass^{k}"] = pass_hat_k(successes, k)
        row["consistency"] = float(agree.mean()) if len(grid) else float("nan")
        row.update(zip(SPREAD, _spread(np.asarray(final5, dtype=float)), strict=True))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns(repeats))


def _spread(values: np.ndarray) -> tuple[float, float, float, float]:
    if len(values) == 0:
        return (float("nan"),) * 4
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), sd, float(values.min()), float(values.max())
