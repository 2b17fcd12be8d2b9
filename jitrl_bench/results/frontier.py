"""The cost/quality frontier across agents and runs, and the β × k heatmap of a sweep.

Quality is an agent's final-5 normalised score averaged over its tasks (the summary's `norm`); cost is dollars where
every point is priced, else LLM tokens, else compute seconds: one axis for all points, named on the plot. A point is
on the Pareto front when no other point is at least as good for at most the same cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Point:
    label: str
    cost: float
    quality: float


def frontier_points(summary: pd.DataFrame, costs: pd.DataFrame) -> tuple[list[Point], str]:
    """One point per (run, agent) and the cost axis they share. Both frames carry `run` and `agent` columns."""
    if summary.empty:
        return [], ""
    quality = summary.groupby(["run", "agent"], sort=False).norm_score.mean()
    spent = costs.groupby(["run", "agent"], sort=False).agg(
        usd=("usd", lambda s: float(s.sum()) if s.notna().all() else math.nan),
        tokens=("prompt_tokens", "sum"),
        completion=("completion_tokens", "sum"),
        compute_s=("compute_s", "sum"),
    )
    spent["tokens"] = spent.tokens + spent.completion
    axes = [("usd", "cost (USD)"), ("tokens", "LLM tokens"), ("compute_s", "compute seconds")]
    column, label = next(((c, n) for c, n in axes if spent[c].notna().all() and (spent[c] > 0).any()), axes[-1])
    runs = summary.run.nunique()
    points = []
    for (run, agent), q in quality.items():
        cost = float(spent.loc[(run, agent), column]) if (run, agent) in spent.index else math.nan
        points.append(Point(agent if runs == 1 else f"{run}:{agent}", cost, float(q)))
    return points, label


def pareto(points: list[Point]) -> list[Point]:
    """The points no other point dominates (cheaper or equal and at least as good, strictly better in one)."""
    front, best = [], -math.inf
    for point in sorted(points, key=lambda p: (p.cost, -p.quality)):
        if point.quality > best:
            front.append(point)
            best = point.quality
    return front


def plot_frontier(points: list[Point], axis: str, path: Path | IO[bytes]) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    front = pareto(points)
    ax.scatter([p.cost for p in points], [p.quality for p in points], s=28, color="#8aa4c8", label="agent × run")
    ax.plot([p.cost for p in front], [p.quality for p in front], "-o", color="#c0392b", ms=7, lw=1.6,
            label="Pareto front")  # fmt: skip
    for p in points:
        ax.annotate(p.label, (p.cost, p.quality), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel(axis)
    ax.set_ylabel("normalised score (final 5, mean over tasks)")
    ax.set_title("cost / quality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sweep_axes(varying: list[str]) -> tuple[str, str] | None:
    """The β and k keys of a sweep over both (e.g. agent.beta and agent.k), else None."""
    beta = next((k for k in varying if k.endswith(".beta")), None)
    k = next((key for key in varying if key.endswith(".k")), None)
    return (beta, k) if beta and k else None


def heatmap_grid(summary: pd.DataFrame, agent: str, beta: str, k: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The main agent's final-5 normalised score per (β, k) cell, averaged over runs (seeds) and tasks; and n runs."""
    mine = summary[summary.agent == agent]
    per_run = mine.groupby(["run", beta, k], sort=False).norm_score.mean().reset_index()
    score = per_run.pivot_table(index=beta, columns=k, values="norm_score", aggfunc="mean")
    count = per_run.pivot_table(index=beta, columns=k, values="norm_score", aggfunc="count")
    return score, count


def plot_heatmap(score: pd.DataFrame, count: pd.DataFrame, agent: str, path: Path | IO[bytes]) -> None:
    fig, ax = plt.subplots(figsize=(1.3 * len(score.columns) + 2.4, 0.8 * len(score.index) + 1.8))
    image = ax.imshow(score.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=0)
    for i in range(len(score.index)):
        for j in range(len(score.columns)):
            value, n = score.iat[i, j], count.iat[i, j]
            if not np.isnan(value):
                ax.text(j, i, f"{value:.3f}\nn={int(n)}", ha="center", va="center", fontsize=8, color="white")
    ax.set_xticks(range(len(score.columns)), [str(c) for c in score.columns])
    ax.set_yticks(range(len(score.index)), [str(i) for i in score.index])
    ax.set_xlabel(str(score.columns.name))
    ax.set_ylabel(str(score.index.name))
    ax.set_title(f"{agent}: final-5 normalised score (n = runs per cell)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
