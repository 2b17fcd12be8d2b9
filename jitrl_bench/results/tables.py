"""Tables and curves from episodes.jsonl: per (task, agent) summaries, learning curves, and aggregation of runs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator
from rich.console import Console
from rich.table import Table

from jitrl_bench.files import write_file
from jitrl_bench.results.comparison import DIFFERENCE, compare, reference_of, shown, with_interval
from jitrl_bench.results.cost import SHOWN, cost_table, load_prices
from jitrl_bench.results.parts import per_part
from jitrl_bench.results.repeats import SPREAD, repeat_table
from jitrl_bench.results.stream import NOTE as STREAM_NOTE
from jitrl_bench.results.stream import TITLE as STREAM_TITLE
from jitrl_bench.results.stream import stream_shown, stream_table
from jitrl_bench.results.uncertainty import LEVEL, Interval, mean_interval
from jitrl_bench.run import received
from jitrl_bench.run.protocols import part_dirs
from jitrl_bench.run.repeats import replica_dirs
from jitrl_bench.run.rundir import existing_run
from jitrl_bench.terminal import cell

PROTOCOL = ["env", "policy", "max_steps", "seeds"]
SUMMARY = ["task", "agent", "episodes", "mean_score", "mean_low", "mean_high", "final5_score", "max_score",
           "norm_score", "success_rate", "success_low", "success_high", "auc"]  # fmt: skip
INTERVALS = f"intervals: {LEVEL:.0%} bootstrap over a run's episodes"


def episodes_frame(run_dir: Path) -> pd.DataFrame:
    """Every committed episode of a run, one row each (an empty frame when none finished yet)."""
    from dataclasses import asdict

    replicas = replica_dirs(run_dir)
    if replicas:  # a repeated run: every replica's episodes, each row with its replica's number
        return pd.concat([episodes_frame(r).assign(repeat=int(r.name)) for r in replicas], ignore_index=True)
    parts = part_dirs(run_dir)
    if parts:  # a train_test or stream run: each row says which split or phase it is from
        return pd.concat([episodes_frame(path).assign(**{c: v}) for c, v, path in parts], ignore_index=True)
    if not (run_dir / "episodes.jsonl").is_file():
        return pd.DataFrame()
    rows = [asdict(r) for r in existing_run(run_dir).finished()]
    return pd.DataFrame(rows)


def summarize(episodes: pd.DataFrame) -> pd.DataFrame:
    """`summary_of` per split or phase of the run (`run.protocol`), or of the whole run."""
    return per_part(episodes, summary_of)


def summary_of(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, agent): mean and final-5 score, the game's max, the final-5 normalised score, success rate,
    and auc = the mean normalised score over all episodes (area under the normalised learning curve). Error rows are
    counted, not scored."""
    if episodes.empty:
        return pd.DataFrame(columns=[*SUMMARY, *PROTOCOL, "errors", "calls", "tokens", "calls_per_step", "fallbacks"])
    ok = episodes[episodes.status == "ok"]
    rows = []
    for (task, agent), group in episodes.groupby(["task", "agent"], sort=False):
        played = ok[(ok.task == task) & (ok.agent == agent)].sort_values("episode")
        max_score = float(played.max_score.max()) if len(played) else 0.0
        final5 = _final5(played)
        score, success = _interval(played, "score"), _interval(played, "success")
        rows.append(
            {
                "task": task,
                "agent": agent,
                "episodes": len(played),
                "mean_score": _mean(played.score),
                "mean_low": score.low,
                "mean_high": score.high,
                "final5_score": final5,
                "max_score": max_score,
                "norm_score": final5 / max_score if max_score > 0 else 0.0,
                "success_rate": _mean(played.success.astype(float)),
                "success_low": success.low,
                "success_high": success.high,
                "auc": _mean(played.norm_score),
                "env": group.env.iloc[0],
                "policy": group.policy.iloc[0],
                "max_steps": int(group.max_steps.iloc[0]),
                "seeds": _seed_range(played.seed),
                "errors": int((group.status != "ok").sum()),
                "calls": int(played.llm_calls.sum()) if "llm_calls" in played else 0,
                "tokens": int(played.tokens.sum()) if "tokens" in played else 0,
                "calls_per_step": _calls_per_step(played),
                "fallbacks": _fallbacks(played),
            }
        )
    return pd.DataFrame(rows)


def _replicated(played: pd.DataFrame) -> bool:
    return "repeat" in played and played.repeat.nunique() > 1


def _interval(played: pd.DataFrame, column: str) -> Interval:
    """Over the replicas' means when the run has several (the honest unit), else over its episodes."""
    if _replicated(played):
        return mean_interval(played.groupby("repeat")[column].mean().to_numpy(dtype=float))
    return mean_interval(played[column].to_numpy(dtype=float))


def _final5(played: pd.DataFrame) -> float:
    """The mean score of the last 5 episodes (of each replica, then averaged over replicas)."""
    if _replicated(played):
        return float(np.mean([g.sort_values("episode").score.tail(5).mean() for _, g in played.groupby("repeat")]))
    return _mean(played.score.tail(5))


def intervals_note(episodes: pd.DataFrame) -> str:
    """What the intervals of a summary are over."""
    if _replicated(episodes):
        return f"intervals: {LEVEL:.0%} bootstrap over the means of {episodes.repeat.nunique()} replicas"
    return INTERVALS


def _calls_per_step(played: pd.DataFrame) -> float:
    """LLM calls per decision, all purposes (acting, proposing, summarizing, evaluating)."""
    if played.empty or "llm_calls" not in played:
        return 0.0
    return round(float(played.llm_calls.sum()) / max(int(played.steps.sum()), 1), 2)


def _fallbacks(played: pd.DataFrame) -> int:
    """Decisions whose LLM proposal was unusable, plus episodes whose LLM evaluator was."""
    proposals = int(played.proposal_fallbacks.sum()) if "proposal_fallbacks" in played else 0
    rewards = int((played.reward_fallback != "").sum()) if "reward_fallback" in played else 0
    return proposals + rewards


def write_summary(run_dir: Path, console: Console | None = None) -> pd.DataFrame:
    """summary.csv, comparison.csv, cost.csv, summary.md (results, the paired comparison, then cost) and curve.png of
    one run; prints the tables."""
    episodes = episodes_frame(run_dir)
    summary = summarize(episodes)
    reference = reference_of(run_dir)
    comparison = per_part(episodes, lambda part: compare(part, reference))
    cost = cost_table(episodes, load_prices(run_dir=run_dir))
    # through write_file: a run may be someone else's, and no link planted in it is written through
    write_file(run_dir / "summary.csv", summary.to_csv(index=False))
    write_file(run_dir / "comparison.csv", comparison.to_csv(index=False))
    write_file(run_dir / "cost.csv", cost.to_csv(index=False))
    costs = cost[[c for c in ["task", *SHOWN] if c in cost.columns]]
    against = f"Against {reference}, paired on task, seed and episode"
    note = intervals_note(episodes)
    markdown = [to_markdown(summary_shown(summary)), f"_{note}_"]
    repeats = per_part(episodes, repeat_table)
    if not repeats.empty:
        write_file(run_dir / "repeats.csv", repeats.to_csv(index=False))
        markdown += [f"## {REPEATS_TITLE}", to_markdown(repeats), f"_{REPEATS_NOTE}_"]
    stream = stream_table(episodes)
    if not stream.empty:
        write_file(run_dir / "stream.csv", stream.to_csv(index=False))
        markdown += [f"## {STREAM_TITLE}", to_markdown(stream_shown(stream)), f"_{STREAM_NOTE}_"]
    if not comparison.empty:
        markdown += [f"## {against}", to_markdown(shown(comparison))]
    write_file(run_dir / "summary.md", "\n\n".join([*markdown, "## Cost", to_markdown(costs)]) + "\n")
    if not episodes.empty and (episodes.status == "ok").any():
        plot_curves(episodes[episodes.status == "ok"], run_dir / "curve.png")
    if console is not None and not cost.empty:  # no played episode (every task failed): nothing to tabulate
        console.print(rich_table(summary_shown(summary), title=str(run_dir), note=note))
        if not repeats.empty:
            console.print(rich_table(repeats, title=REPEATS_TITLE, note=REPEATS_NOTE))
        if not stream.empty:
            console.print(rich_table(stream_shown(stream), title=STREAM_TITLE, note=STREAM_NOTE))
        if not comparison.empty:
            console.print(rich_table(shown(comparison), title=against, note=VERDICT_NOTE.format(reference=reference)))
        if int(cost.llm_calls.sum()) > 0:
            console.print(rich_table(costs, title="cost"))
    return summary


REPEATS_TITLE = "Across replicas"
REPEATS_NOTE = (
    "pass^k: the chance that k replicas of an episode all succeed (unbiased, over episodes every replica finished) · "
    "agree (consistency): share of those episodes whose replicas agree · final5, sd, min, max: the replicas' final-5 "
    "scores"
)
VERDICT_NOTE = (
    "verdict: better / worse than {reference} when the paired sign-flip test gives p < 0.05, else no evidence"
)


def summary_shown(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as it reads in a table: each mean with its interval in one cell, the bounds' columns dropped."""
    out = summary.drop(columns=[c for c in ("mean_low", "mean_high", "success_low", "success_high") if c in summary])
    for column, low, high in (("mean_score", "mean_low", "mean_high"), ("success_rate", "success_low", "success_high")):
        if column in out and low in summary:
            bounds = zip(summary[column], summary[low], summary[high], strict=True)
            out[column] = [with_interval(v, lo, hi) for v, lo, hi in bounds]
    return out


def plot_curves(episodes: pd.DataFrame, path: Path) -> None:
    """Score per episode, one line per agent, one panel per task."""
    tasks = list(dict.fromkeys(episodes.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for agent, group in episodes[episodes.task == task].groupby("agent", sort=False):
            group = group.sort_values("episode")
            line = ax.plot(group.episode + 1, group.score, marker="o", ms=3, lw=0.8, alpha=0.45)[0]
            smooth = group.score.rolling(5, min_periods=1).mean()  # a 5-episode running mean reads through the noise
            ax.plot(group.episode + 1, smooth, lw=2.2, color=line.get_color(), label=f"{agent} (5-episode mean)")
        max_score = episodes[episodes.task == task].max_score.max()
        if max_score > 0:
            ax.axhline(max_score, color="grey", lw=0.8, ls="--", label="max score")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(task)
        ax.set_xlabel("episode")
        ax.set_ylabel("score")
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_file(path, png.getvalue())


def aggregate(run_dirs: list[Path]) -> pd.DataFrame:
    """Summaries of several runs side by side, with the config values that differ between runs as columns."""
    configs = flat_configs(run_configs(run_dirs))
    varying = varying_keys(configs)
    frames = [
        labelled(summarize(episodes_frame(run_dir)), run_dir.name, flat, varying)
        for run_dir, flat in zip(run_dirs, configs, strict=True)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def labelled(frame: pd.DataFrame, run: str, flat: dict[str, Any], varying: list[str]) -> pd.DataFrame:
    """The frame with the run's name and its values of the varying config keys as its first columns."""
    frame = frame.copy()
    frame.insert(0, "run", run)
    for pos, key in enumerate(varying):
        frame.insert(1 + pos, key, flat.get(key))
    return frame


def run_configs(run_dirs: list[Path]) -> list[Any]:
    """Each run's config.yaml as plain data ({} for a run without one)."""
    return [read_config(r) if (r / "config.yaml").exists() else {} for r in run_dirs]


def flat_configs(configs: list[Any]) -> list[dict[str, Any]]:
    """Each run's config as dotted keys (agent.beta: 0.5); a list value as its text (env.game: [zork1, detective])."""
    return [{k: str(v) if isinstance(v, list) else v for k, v in _flatten(c).items()} for c in configs]


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The config keys whose values differ between runs (what a sweep swept), bookkeeping and prices left out."""
    keys = dict.fromkeys(k for c in configs for k in c)
    varying = [k for k in keys if len({str(c.get(k)) for c in configs}) > 1]
    return [k for k in varying if not k.startswith(("_meta", "run.dir", "prices."))]


def read_config(run_dir: Path) -> Any:
    """A run's config.yaml as plain data, never interpolated (a received run is data); UserError naming the file
    when it cannot be read."""
    return received.read_config(run_dir)


def to_markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


HEADERS = {"mean_score": "mean [95%]", "final5_score": "final5", "max_score": "max", "norm_score": "norm",
           "success_rate": "success [95%]", "episodes": "eps", "calls_per_step": "calls/step", "llm_calls": "calls",
           "prompt_tokens": "prompt tok", "completion_tokens": "compl. tok", "embeddings": "embeds",
           "wall_s": "wall s", "compute_s": "compute s", "priced_by": "priced by", "final5_mean": "final5",
           "final5_sd": "sd", "final5_min": "min", "final5_max": "max", "consistency": "agree"}  # fmt: skip
METRICS = {"episodes", "mean_score", "final5_score", "norm_score", "success_rate", "auc", "calls", "tokens",
           "calls_per_step", "llm_calls", "prompt_tokens", "completion_tokens", "embeddings", "wall_s", "compute_s",
           "usd", "paper", "ours", "pairs", DIFFERENCE, "p", "verdict", "mean_low", "mean_high", "success_low",
           "success_high", "consistency", "items", *SPREAD} | {f"pass^{k}" for k in range(1, 101)}  # fmt: skip


def rich_table(frame: pd.DataFrame, title: str = "", note: str = "") -> Table:
    """A terminal-width table: a column with one value in every row (the protocol, usually) moves to the caption,
    after `note`."""
    constant = [c for c in frame.columns if c not in METRICS and len(frame) > 1 and frame[c].nunique(dropna=False) == 1]
    if len(frame) == 1:
        constant = [c for c in frame.columns if c not in METRICS and c not in ("task", "agent")]
    caption = " · ".join(
        [note] * bool(note) + [f"{HEADERS.get(c, c).replace('_', ' ')} {_fmt(frame[c].iloc[0])}" for c in constant]
    )
    shown = frame.drop(columns=constant)
    table = Table(title=cell(title), caption=cell(caption) if caption else None, show_lines=False)
    for col in shown.columns:  # every text from a run (names, paths) as a Text: never read as markup
        numeric = pd.api.types.is_numeric_dtype(shown[col])
        table.add_column(cell(HEADERS.get(str(col), str(col))), justify="right" if numeric else "left", overflow="fold")
    for _, row in shown.iterrows():
        table.add_row(*(cell(_fmt(row[c])) for c in shown.columns))
    return table


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def _mean(series: pd.Series) -> float:
    return float(series.mean()) if len(series) else 0.0


def _seed_range(seeds: pd.Series) -> str:
    if seeds.empty:
        return ""
    lo, hi = int(seeds.min()), int(seeds.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else ""
    return str(value)
