"""`jitrl-bench reproduce NAME`: run one of the paper's settings (configs/experiment/paper_*.yaml) and put our numbers
beside the paper's, from the reference rows shipped in `jitrl_bench/reference/paper.csv` (each with its source).

Every row of `reproduction.md` / `.csv` says what ours was made with (model, backend, steps, episodes, seeds, whether
the valid actions were listed, the reward source, the budget) and keeps the paper's value in its own column: our
numbers are never shown as the paper's. `--budget smoke` runs the same pipeline on the embedded model in minutes (the
overlay's `reproduce.smoke` overrides); `--budget paper` is the paper's budget, for a GPU or an API.
"""

from __future__ import annotations

import csv
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from jitrl_bench.checks import Checked, check_tree, non_empty, one_of
from jitrl_bench.config import choices, compose_config, typed
from jitrl_bench.errors import UserError
from jitrl_bench.experiment import execute
from jitrl_bench.paths import results_dir
from jitrl_bench.results.tables import episodes_frame, to_markdown
from jitrl_bench.results.uncertainty import mean_interval
from jitrl_bench.run.episode import new_run_id
from jitrl_bench.run.spec import build_spec
from jitrl_bench.terminal import say

BUDGETS = ("smoke", "paper")
METRICS = ("mean_score", "final_score", "last10_score", "success_rate_pct")
PREFIX = "paper_"


@dataclass
class Compare(Checked):
    """One of our values beside one reference row."""

    agent: str
    metric: str
    benchmark: str
    setting: str
    method: str
    tasks: list[str] = field(default_factory=list)
    """Our tasks the value is computed over; empty: every task of the run (a benchmark-wide success rate)."""

    def check(self) -> None:
        one_of("metric", self.metric, METRICS)


@dataclass
class ReproduceConfig(Checked):
    """The `reproduce` section a paper overlay fills."""

    description: str = ""
    compare: list[Compare] = field(default_factory=list)
    smoke: list[str] = field(default_factory=list)

    def check(self) -> None:
        non_empty("compare", self.compare)


def settings() -> dict[str, str]:
    """Each paper setting and what it runs."""
    out = {}
    for name in choices("experiment"):
        if name.startswith(PREFIX):
            out[name] = reproduce_config(compose_config([f"experiment={name}"])).description
    return out


def reproduce_config(composed: DictConfig) -> ReproduceConfig:
    config: ReproduceConfig = typed("reproduce", composed.reproduce, ReproduceConfig)
    check_tree(config, "reproduce")
    return config


def reference_rows(name: str = "paper") -> list[dict[str, str]]:
    """`reference/paper.csv`: the JitRL paper's numbers, which the settings compare with; `published`: numbers other
    work published on the text and grid benchmarks (TALES, BALROG, ALFWorld), each row with its model, budget and how
    actions were given, to read a run beside: no setting here reproduces their protocols."""
    with importlib.resources.files("jitrl_bench").joinpath(f"reference/{name}.csv").open() as f:
        return list(csv.DictReader(f))


def run(name: str, budget: str, overrides: list[str], console: Console) -> Path:
    """Compose the setting (with the smoke overrides for `--budget smoke`), run it, write the side-by-side table."""
    if name not in settings():
        raise UserError(f"unknown setting {name!r}: `jitrl-bench reproduce --list` names them")
    if budget not in BUDGETS:
        raise UserError(f"--budget {budget!r}: use smoke (the embedded model, minutes) or paper (the paper's budget)")
    base = [f"experiment={name}"]
    yours = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    smoke = reproduce_config(compose_config(base)).smoke if budget == "smoke" else []
    smoke = [o for o in smoke if o.split("=", 1)[0] not in yours]  # your overrides win over the smoke budget's
    if not any(o.startswith("run.dir=") for o in overrides):
        folder = results_dir("runs", f"{name}-{budget}-{new_run_id()}")
        overrides = [*overrides, f"run.dir={folder}"]
    composed = compose_config([*base, *smoke, *overrides])
    wanted = reproduce_config(composed)  # checked now, before anything loads
    spec = build_spec(composed)
    path = execute(spec, console=console)
    frame = reproduction(path, wanted, spec.raw, budget)
    frame.to_csv(path / "reproduction.csv", index=False)
    (path / "reproduction.md").write_text(
        f"# {name} ({budget} budget)\n\n{wanted.description}\n\nPaper values come from the source named on each "
        f"row; ours from this run only.\n\n{to_markdown(frame)}\n"
    )
    console.print(rich_reproduction(frame, f"{name}: ours beside the paper ({budget} budget)"))
    say(console, f"side by side: {path / 'reproduction.md'}")
    return path


def reproduction(run_dir: Path, wanted: ReproduceConfig, composed: DictConfig, budget: str) -> pd.DataFrame:
    """One row per compared value: the paper's, then ours with everything that shaped it."""
    episodes = episodes_frame(run_dir)
    ok = episodes[episodes.status == "ok"] if not episodes.empty else episodes
    reference = reference_rows()
    rows = []
    for item in wanted.compare:
        paper = next(
            (r for r in reference if (r["benchmark"], r["setting"], r["method"]) == (item.benchmark, item.setting,
                                                                                    item.method)), None,
        )  # fmt: skip
        mine = ok[ok.agent == item.agent] if not ok.empty else ok
        if item.tasks and not mine.empty:
            mine = mine[mine.task.isin(item.tasks)]
        rows.append(
            {
                "benchmark": item.benchmark,
                "setting": item.setting,
                "metric": item.metric,
                "paper method": item.method,
                "paper": paper["value"] if paper else "",
                "ours: agent": item.agent,
                "ours": our_value(mine, item.metric),  # None: this run played none of the tasks compared
                **our_interval(mine, item.metric, paper["value"] if paper else ""),
                "episodes": len(mine),
                "llm calls/step": round(float(mine.llm_calls.sum() / max(mine.steps.sum(), 1)), 2) if len(mine) else 0,
                "proposal fallbacks": int(mine.proposal_fallbacks.sum()) if len(mine) else 0,
                **protocol(composed, budget),
                **({"model": str(mine.policy.iloc[0])} if len(mine) else {}),  # the name the policy reported
                "paper source": paper["source"] if paper else "no such reference row",
            }
        )
    return pd.DataFrame(rows)


def our_value(rows: pd.DataFrame, metric: str) -> float | None:
    if rows.empty:
        return None
    if metric == "success_rate_pct":
        return round(100.0 * float(rows.success.mean()), 2)
    by_task = rows.sort_values("episode").groupby("task").score
    if metric == "final_score":
        return round(float(by_task.last().mean()), 2)
    if metric == "last10_score":
        return round(float(by_task.apply(lambda s: s.tail(10).mean()).mean()), 2)
    return round(float(by_task.mean().mean()), 2)


def our_interval(rows: pd.DataFrame, metric: str, paper: str) -> dict[str, object]:
    """Our value's 95% bootstrap interval and whether the paper's value lies inside it, over what `our_value` averages:
    the episodes for a success rate (pooled over tasks); for scores, the tasks when several were played (ours is a
    mean of per-task values), else the episodes the metric reads (one for final_score: no interval)."""
    if rows.empty:
        return {"ours 95%": "", "interval over": "", "paper inside": ""}
    per_task = {task: group.sort_values("episode") for task, group in rows.groupby("task")}

    def pick(episodes: pd.DataFrame) -> pd.Series:
        """The episodes' values the metric averages."""
        if metric == "success_rate_pct":
            return 100.0 * episodes.success.astype(float)
        return episodes.score.tail({"final_score": 1, "last10_score": 10}.get(metric, len(episodes)))

    if metric == "success_rate_pct":  # ours pools the episodes of every task (our_value): so does its interval
        values, over = [float(v) for v in pick(rows)], f"{len(rows)} episodes"
    elif len(per_task) > 1:
        values, over = [float(pick(g).mean()) for g in per_task.values()], f"{len(per_task)} tasks"
    else:
        values = [float(v) for v in pick(next(iter(per_task.values())))]
        over = f"{len(values)} episodes"
    interval = mean_interval(np.array(values))
    if interval.low != interval.low:
        return {"ours 95%": "", "interval over": f"{over}: too few for an interval", "paper inside": ""}
    try:
        reference = float(paper)
    except ValueError:  # no reference row, or a per-site list
        inside = ""
    else:
        inside = "yes" if interval.low <= reference <= interval.high else "no"
    return {"ours 95%": f"[{interval.low:.2f}, {interval.high:.2f}]", "interval over": over, "paper inside": inside}


def protocol(composed: DictConfig, budget: str) -> dict[str, object]:
    """What our numbers were made with."""
    policy = composed.policy
    mode = str(policy.get("mode", "score"))
    backend = str(policy._target_).rsplit(".", 1)[-1].removesuffix("PolicyConfig").lower()
    reward = composed.reward
    proposals = str(composed.agent.propose.mode)
    source = f"llm evaluator ±{reward.scale:g}" if reward.name == "llm" else "env score deltas"
    return {
        "model": str(policy.get("model", policy.get("name", ""))),
        "backend": f"{backend} ({mode})",
        "candidates": "env list" if proposals == "none" else f"{proposals} proposals",
        "valid actions listed": "yes",
        "reward": f"{source}, γ {composed.agent.gamma:g}",
        "steps": int(composed.run.max_steps),
        "episodes per task": int(composed.run.episodes),
        "seeds": f"{composed.run.seed}-{composed.run.seed + composed.run.episodes - 1}",
        "budget": budget,
    }


def ours_with_interval(frame: pd.DataFrame) -> pd.DataFrame:
    """For a terminal: our value and its interval in one cell; what the interval is over stays in the files."""
    if "ours 95%" not in frame:
        return frame
    out = frame.drop(columns=["ours 95%", "interval over"])
    out["ours"] = [
        f"{v} {i}".strip() if v is not None and v == v else ""
        for v, i in zip(frame.ours, frame["ours 95%"], strict=True)
    ]
    return out


def rich_reproduction(frame: pd.DataFrame, title: str) -> Table:
    """The terminal's view: the values; the protocol columns (the same on every row) in the caption."""
    frame = ours_with_interval(frame)
    shown = ["setting", "metric", "paper method", "paper", "ours: agent", "ours", "paper inside", "episodes",
             "llm calls/step"]  # fmt: skip
    first = frame.iloc[0] if len(frame) else None
    caption = None
    if first is not None:
        caption = " · ".join(f"{c} {first[c]}" for c in ("model", "backend", "candidates", "reward", "steps", "budget"))
    table = Table(title=title, caption=caption)
    for column in shown:
        table.add_column(column, justify="right" if column in ("paper", "ours", "episodes") else "left")
    for _, row in frame.iterrows():
        table.add_row(*("" if pd.isna(row[c]) else str(row[c]) for c in shown))
    return table


BENCHMARKS = {"jericho": "Jericho", "webarena_lite": "WebArena-Lite", "webarena": "WebArena",
              "webarena_verified": "WebArena"}  # fmt: skip
"""Our env names → the reference rows' benchmark."""
METHODS = {"jitrl": ("JitRL", "JitRL (logit update)"), "jitrl_paper": ("JitRL", "JitRL (logit update)"),
           "static": ("static LLM",), "prompt_update": ("Prompt Update",), "webrl": ("WebRL",)}  # fmt: skip
"""Our agents → the reference rows' methods they correspond to."""
WHOLE_BENCHMARK = ("165 tasks", "overall")


def reference_table(run_dir: Path) -> pd.DataFrame:
    """A finished run beside the reference rows that match it: same benchmark, the method its agent implements, and
    the game (Jericho) or the whole benchmark (web: our value over every task the run played). Nothing matched: empty.
    Our value uses the reference row's metric; the protocol columns say how far the run is from the paper's."""
    episodes = episodes_frame(run_dir)
    if episodes.empty:
        return pd.DataFrame()
    ok = episodes[episodes.status == "ok"]
    env = str(episodes.env.iloc[0])
    rows = []
    for reference in reference_rows():
        try:
            float(reference["value"])
        except ValueError:  # per-site lists ("63.2/46.7/...") have no single value to set beside ours
            continue
        if reference["metric"] not in METRICS and reference["metric"] != "score":
            continue
        if BENCHMARKS.get(env) != reference["benchmark"]:
            continue
        setting = reference["setting"]
        for agent, mine in ok.groupby("agent", sort=False):
            if reference["method"] not in METHODS.get(str(agent), ()):
                continue
            game = setting.split(" ")[0]
            if env == "jericho":
                mine = mine[mine.task == game]
            elif setting not in WHOLE_BENCHMARK:
                continue
            if mine.empty:
                continue
            metric = "final_score" if reference["metric"] == "score" else reference["metric"]
            rows.append({"benchmark": reference["benchmark"], "setting": setting, "metric": reference["metric"],
                         "paper method": reference["method"], "paper": float(reference["value"]),
                         "ours: agent": agent, "ours": our_value(mine, metric),
                         **our_interval(mine, metric, reference["value"]), "tasks": mine.task.nunique(),
                         "episodes": len(mine), "steps": int(mine.max_steps.iloc[0]), "model": str(mine.policy.iloc[0]),
                         "paper source": reference["source"]})  # fmt: skip
    return pd.DataFrame(rows)


def listing() -> str:
    """One paragraph per setting: its name, what it runs, the reference rows it is compared with; then the published
    rows of the other benchmarks, grouped by what makes them comparable (setting, metric, budget, actions)."""
    lines = ["The paper's settings (jitrl-bench reproduce NAME [--budget smoke|paper] [OVERRIDES]):", ""]
    for name, description in settings().items():
        wanted = reproduce_config(compose_config([f"experiment={name}"]))
        rows = sorted({f"{c.benchmark} {c.setting} ({c.method})" for c in wanted.compare})
        lines += [f"{name}", f"  runs: {description}", f"  compared with: {'; '.join(rows)}", ""]
    lines += [
        "Published numbers on the other benchmarks (reference rows to read a run beside; none is a setting here:",
        "their budgets and action interfaces differ from a run's, and each row says how):",
        "",
    ]
    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in reference_rows("published"):
        key = (row["benchmark"], row["setting"], row["method"], row["metric"], row["steps"], row["actions"])
        groups.setdefault(key, []).append(row)
    for (benchmark, setting, method, metric, steps, actions), rows_ in groups.items():
        values = ", ".join(f"{r['model']} {r['value']} ({r['episodes']})" for r in rows_)
        lines += [
            f"{benchmark} {setting}: {method}",
            f"  {metric}; steps: {steps}; actions: {actions}",
            f"  {values}",
            *(f"  source: {source}" for source in dict.fromkeys(r["source"] for r in rows_)),
            "",
        ]
    return "\n".join(lines).rstrip()
