"""What a run cost: LLM calls and tokens by purpose, embeddings, wall and compute time, and dollars.

Dollars come from a price table (configs/prices/): an API model's tokens at its per-million price (each purpose priced
by the model that served it: the evaluator may be another model), else the GPU time of a model this run served itself
at `gpu_hour`. A model on this machine's CPU, or none at all, is not priced (the time columns still say what it took).
Costs copied from the literature sit in their own rows, labelled as copied, so a claimed ratio (the paper's "30×
cheaper than WebRL") is computed from its inputs rather than quoted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from jitrl_bench.checks import check_tree
from jitrl_bench.contract import ACTING, EVALUATING, LEARNING, PROPOSING, SUMMARIZING
from jitrl_bench.errors import UserError
from jitrl_bench.prices import PricesConfig

PURPOSES = (ACTING, PROPOSING, SUMMARIZING, EVALUATING, LEARNING)
SHOWN = ["agent", "episodes", "llm_calls", "prompt_tokens", "completion_tokens", "embeddings", "wall_s", "compute_s",
         "usd", "priced_by"]  # fmt: skip
"""The terminal's cost columns; cost.csv also splits calls and tokens by purpose and has gpu_s and usd_per_episode."""


def load_prices(source: Path | None = None, run_dir: Path | None = None) -> PricesConfig:
    """A price file (`--prices`), else the prices a run recorded in its config.yaml, else the shipped table."""
    from jitrl_bench.config import instantiate_group
    from jitrl_bench.paths import CONFIG_DIR

    if source is None and run_dir is not None and (run_dir / "config.yaml").is_file():
        from jitrl_bench.run.received import buildable, read_config

        try:  # plain data: a `${oc.env:...}` in a received run's price row stays text, never the reader's secret
            recorded = read_config(run_dir)
        except UserError:  # a damaged config.yaml is reported where it matters (resume, report); prices fall back
            recorded = {}
        if isinstance(recorded.get("prices"), dict):
            return _checked(instantiate_group("prices", buildable(recorded["prices"], "prices")))
    path = source or CONFIG_DIR / "prices" / "default.yaml"
    if not path.is_file():
        raise UserError(f"--prices {path}: no such file (copy jitrl_bench/configs/prices/default.yaml and edit it)")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # yaml's and OmegaConf's errors share no base
        raise UserError(f"--prices {path}: not a YAML price table ({type(e).__name__})") from None
    if "_target_" not in node:
        node._target_ = f"{PricesConfig.__module__}.PricesConfig"
    return _checked(instantiate_group("prices", node))


def _checked(config: Any) -> PricesConfig:
    if not isinstance(config, PricesConfig):
        raise UserError(f"prices._target_ must be {PricesConfig.__module__}.PricesConfig")
    check_tree(config, "prices")
    return config


def episode_costs(episodes: pd.DataFrame, prices: PricesConfig) -> pd.DataFrame:
    """Each episode row with `gpu_s`, `usd` (NaN: not priced) and `priced_by` (tokens, gpu time, or why not)."""
    frame = episodes.copy()
    priced = [_episode_usd(row, prices) for row in frame.to_dict("records")]
    frame["usd"] = [usd for usd, _ in priced]
    frame["priced_by"] = [basis for _, basis in priced]
    frame["gpu_s"] = [_gpu_seconds(r) for r in frame.to_dict("records")]
    return frame


def _gpu_seconds(row: dict[str, Any]) -> float:
    """The seconds the episode's model calls held a GPU this run served itself (all compute time for older runs
    that did not record the model's own time)."""
    if row.get("hardware") != "gpu":
        return 0.0
    seconds = row.get("seconds")
    return float(seconds.get("llm", 0.0)) if isinstance(seconds, dict) and seconds else float(row.get("compute_s", 0.0))


def _episode_usd(row: dict[str, Any], prices: PricesConfig) -> tuple[float, str]:
    """Tokens at each purpose's model price where every purpose is priced; else GPU time; else not priced."""
    models: dict[str, str] = row.get("model_by_purpose") or {}
    prompt: dict[str, int] = row.get("prompt_tokens_by_purpose") or {}
    completion: dict[str, int] = row.get("completion_tokens_by_purpose") or {}
    calls: dict[str, int] = row.get("calls_by_purpose") or {}
    if not calls:
        return 0.0, "no LLM calls"
    rates = {purpose: prices.price(models.get(purpose, str(row["policy"]))) for purpose in calls}
    if all(rate is not None for rate in rates.values()):
        usd = sum(
            (prompt.get(p, 0) * rate.input + completion.get(p, 0) * rate.output) / 1e6
            for p, rate in rates.items()
            if rate is not None
        )
        return usd, "tokens"
    if row.get("hardware") == "gpu":
        return _gpu_seconds(row) / 3600.0 * prices.gpu_hour, "gpu time"
    unpriced = sorted({models.get(p, str(row["policy"])) for p, rate in rates.items() if rate is None})
    where = row.get("hardware") or "unknown hardware"
    return math.nan, f"not priced ({', '.join(unpriced)} on {where})"


def cost_table(episodes: pd.DataFrame, prices: PricesConfig) -> pd.DataFrame:
    """One row per (task, agent): calls and prompt/completion tokens by purpose, embeddings, time and dollars."""
    played = episodes[episodes.status != "error"] if not episodes.empty else episodes
    if played.empty:  # nothing played (no episode yet, or every task failed): the columns, no rows
        return pd.DataFrame(columns=["task", *SHOWN])
    ok = episode_costs(played, prices)
    rows = []
    for (task, agent), group in ok.groupby(["task", "agent"], sort=False):
        row: dict[str, Any] = {"task": task, "agent": agent, "model": group.policy.iloc[0], "episodes": len(group)}
        row["steps"] = int(group.steps.sum())
        row["llm_calls"] = int(group.llm_calls.sum())
        row["prompt_tokens"] = int(group.prompt_tokens.sum())
        row["completion_tokens"] = int(group.completion_tokens.sum())
        for purpose in PURPOSES:
            row[f"calls_{purpose}"] = _sum_key(group, "calls_by_purpose", purpose)
            row[f"prompt_{purpose}"] = _sum_key(group, "prompt_tokens_by_purpose", purpose)
            row[f"completion_{purpose}"] = _sum_key(group, "completion_tokens_by_purpose", purpose)
        row["embeddings"] = int(group.embeddings.sum()) if "embeddings" in group else 0
        row["wall_s"] = round(float(group.wall_s.sum()), 2)
        row["compute_s"] = round(float(group.compute_s.sum()), 2) if "compute_s" in group else 0.0
        row["gpu_s"] = round(float(group.gpu_s.sum()), 2)
        usd = group.usd
        row["usd"] = float(usd.sum()) if usd.notna().all() else math.nan
        row["usd_per_episode"] = row["usd"] / len(group) if len(group) else math.nan
        row["priced_by"] = "; ".join(dict.fromkeys(group.priced_by))
        rows.append(row)
    return pd.DataFrame(rows)


def _sum_key(group: pd.DataFrame, column: str, key: str) -> int:
    if column not in group:
        return 0
    return int(sum(int((d or {}).get(key, 0)) for d in group[column]))


def literature_table(prices: PricesConfig, costs: pd.DataFrame) -> pd.DataFrame:
    """Copied costs (labelled), each one's ratio to the first (the paper's claim, computed), and this run's agents."""
    rows: list[dict[str, Any]] = []
    first = prices.literature[0] if prices.literature else None
    for item in prices.literature:
        ratio = first.usd / item.usd if first is not None and item.usd > 0 else math.nan
        rows.append({"method": item.method, "usd": item.usd, "gpu_hours": item.gpu_hours,
                     f"{first.method if first else ''} / this": round(ratio, 1),
                     "origin": f"copied: {item.source}"})  # fmt: skip
    if not costs.empty and first is not None:
        for agent, group in costs.groupby("agent", sort=False):
            usd = float(group.usd.sum()) if group.usd.notna().all() else math.nan
            ratio = first.usd / usd if usd > 0 else math.nan
            rows.append({"method": f"{agent} (this run)", "usd": usd, "gpu_hours": float(group.gpu_s.sum()) / 3600,
                         f"{first.method} / this": round(ratio, 1),
                         "origin": f"measured: {int(group.episodes.sum())} episodes"})  # fmt: skip
    return pd.DataFrame(rows)
