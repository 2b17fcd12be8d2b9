"""`jitrl-bench report`: one self-contained HTML file for one run, several runs or a sweep.

Everything the page shows is gathered here into one JSON document and inlined beside the page's script and style
(results/assets/): no server, no network, it opens from disk. The page builds its DOM from that data with
`textContent` only, so model output (observations, answers) is shown as text, never interpreted as markup.
"""

from __future__ import annotations

import base64
import importlib.resources
import io
import json
import math
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jitrl_bench.files import write_file
from jitrl_bench.prices import PricesConfig
from jitrl_bench.results.comparison import compare, reference_of
from jitrl_bench.results.cost import cost_table, literature_table, load_prices
from jitrl_bench.results.frontier import frontier_points, heatmap_grid, plot_frontier, plot_heatmap, sweep_axes
from jitrl_bench.results.parts import per_part
from jitrl_bench.results.tables import episodes_frame, flat_configs, labelled, run_configs, summarize, varying_keys
from jitrl_bench.run.received import CONFIG_BYTES, check_run, read_text

OBSERVATION_CHARS = 6000
VIEWER_CANDIDATES = 3000  # candidates shown per decision at most: env.max_candidates' default (older runs had more)
"""What the viewer shows of an observation (web pages can be long); the step files keep it whole."""
STATE_CHARS = 1500
MAX_DECISIONS = 20000
"""Steps inlined at most (about 2-4 KB each); beyond it the last episodes are left out and the page says so."""


def write_report(run_dirs: list[Path], out: Path, prices_file: Path | None = None) -> Path:
    """Gather the runs' data, draw the frontier (and the β × k heatmap of a sweep), write `out`. A run is data: one
    holding a link is refused, and every file is written new and renamed into place (a planted link is replaced)."""
    for run_dir in run_dirs:
        check_run(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = "" if out.stem == "report" else f"{out.stem}-"  # results/reports/<time>.html: <time>-frontier.png
    data = gather(run_dirs, prices_file, out.parent, prefix)
    template = _asset("report.html")
    page = (
        template.replace("/*STYLE*/", _asset("report.css"))
        .replace("/*SCRIPT*/", _asset("report.js"))
        .replace("/*DATA*/", _inline_json(data))
    )
    return write_file(out, page)


def gather(run_dirs: list[Path], prices_file: Path | None, image_dir: Path, prefix: str = "") -> dict[str, Any]:
    configs = run_configs(run_dirs)
    flats = flat_configs(configs)
    varying = varying_keys(flats)
    names = _run_names(run_dirs)
    summaries, comparisons, costs, episodes, decisions, memories, runs = [], [], [], [], {}, {}, []
    uids: dict[str, list[Any]] = {}
    prices = load_prices(prices_file, run_dirs[0] if run_dirs else None)  # the literature rows: the first run's
    budget, left_out = MAX_DECISIONS, 0
    for run_dir, name, config, flat in zip(run_dirs, names, configs, flats, strict=True):
        frame = episodes_frame(run_dir)
        summary = labelled(summarize(frame), name, flat, varying)
        cost = labelled(cost_table(frame, load_prices(prices_file, run_dir)), name, flat, varying)
        summaries.append(summary)
        paired = per_part(frame, partial(compare, reference=reference_of(run_dir)))
        comparisons.append(labelled(paired, name, flat, varying))
        costs.append(cost)
        ok = frame[frame.status != "error"] if not frame.empty else frame
        for row in ok.to_dict("records"):
            episodes.append(_episode(row, name))
            uids[str(row["episode_uid"])] = [name, row["task"], row["agent"], int(row["episode"])]
        for (task, agent, episode), steps in _step_files(run_dir, ok):
            if budget <= 0:
                left_out += 1
                continue
            decisions[f"{name}|{task}|{agent}|{episode}"] = [_decision(s) for s in steps]
            budget -= len(steps)
        memories[name] = _memory_states(run_dir, decisions, name)
        runs.append(_provenance(run_dir, name, config, frame))
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    comparison = pd.concat(comparisons, ignore_index=True) if comparisons else pd.DataFrame()
    cost = pd.concat(costs, ignore_index=True) if costs else pd.DataFrame()
    images = _images(summary, cost, varying, configs, image_dir, prefix)
    return {
        "title": run_dirs[0].name if len(run_dirs) == 1 else f"{len(run_dirs)} runs",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "varying": varying,
        "summary": _records(summary),
        "comparison": _records(comparison),
        "episodes": episodes,
        "decisions": decisions,
        "decisions_left_out": left_out,
        "memory": memories,
        "uids": uids,
        "cost": _records(cost),
        "literature": _records(literature_table(prices, cost)),
        "runs": runs,
        "images": images,
    }


def _run_names(run_dirs: list[Path]) -> list[str]:
    """Short, unique names: the folder's name, with its parent's where two runs share one (sweep job numbers)."""
    names = [r.name for r in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{r.parent.name}/{r.name}" for r in run_dirs]
    return names


def _episode(row: dict[str, Any], run: str) -> dict[str, Any]:
    artifacts = row.get("artifacts") or {}
    return {
        "run": run,
        "task": row["task"],
        "agent": row["agent"],
        "episode": int(row["episode"]),
        "seed": int(row["seed"]),
        "score": float(row["score"]),
        "max_score": float(row["max_score"]),
        "norm_score": float(row["norm_score"]),
        "success": bool(row["success"]),
        "steps": int(row["steps"]),
        "status": row["status"],
        "answer": artifacts.get("answer"),
        "final_url": artifacts.get("final_url", ""),
        "uid": row["episode_uid"],
    }


def _step_files(run_dir: Path, episodes: pd.DataFrame) -> Iterator[tuple[tuple[str, str, int], list[dict[str, Any]]]]:
    from jitrl_bench.run.rundir import safe_name

    for row in episodes.sort_values(["task", "agent", "episode"]).to_dict("records") if not episodes.empty else []:
        path = run_dir / "steps" / safe_name(row["task"]) / safe_name(row["agent"]) / f"{row['episode']}.jsonl"
        if path.is_file():
            steps = [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
            yield (row["task"], row["agent"], int(row["episode"])), steps


def _decision(step: dict[str, Any]) -> dict[str, Any]:
    d = step["decision"]
    return {
        "step": step["step"],
        "observation": str(step.get("observation", ""))[:OBSERVATION_CHARS],
        "action": step["action"],
        "reward": step["reward"],
        "score": step["score"],
        "index": d["index"],
        "candidates": d["candidates"][:VIEWER_CANDIDATES],  # the first ones, as the env's max_candidates keeps them
        "candidates_cut": max(len(d["candidates"]) - VIEWER_CANDIDATES, 0),
        "z": d["z"][:VIEWER_CANDIDATES],
        "advantage": d.get("advantage", [])[:VIEWER_CANDIDATES],
        "z_prime": d.get("z_prime", [])[:VIEWER_CANDIDATES],
        "probs": d.get("probs", [])[:VIEWER_CANDIDATES],
        "neighbours": d.get("neighbours", []),
        "notes": d.get("notes", {}),
        "bias_applied": d.get("bias_applied", ""),
        "proposal_fallback": d.get("proposal_fallback", ""),
        "usage": d.get("usage", {}),
    }


def _memory_states(run_dir: Path, decisions: dict[str, list[dict[str, Any]]], run: str) -> dict[str, Any]:
    """Per agent, the memory entries the inlined decisions retrieved: their state text, episode and step."""
    wanted: dict[str, set[int]] = {}
    for key, steps in decisions.items():
        if key.startswith(f"{run}|"):
            agent = key.split("|")[2]
            wanted.setdefault(agent, set()).update(int(n["id"]) for s in steps for n in s["neighbours"] if "id" in n)
    out: dict[str, Any] = {}
    for agent, ids in wanted.items():
        path = run_dir / "memory" / agent / "entries.jsonl"
        if not path.is_file() or not ids:
            continue
        entries: dict[str, Any] = {}
        for line in read_text(path).splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: memory's reader skips it too
                continue
            if isinstance(entry, dict) and entry.get("id") in ids:
                entries[str(entry["id"])] = {"state": str(entry.get("state", ""))[:STATE_CHARS],
                                             "episode": entry.get("episode", ""), "step": entry.get("step"),
                                             "task": entry.get("task", "")}  # fmt: skip
        out[agent] = entries
    return out


def _provenance(run_dir: Path, name: str, config: Any, frame: pd.DataFrame) -> dict[str, Any]:
    meta = config.get("_meta", {}) if isinstance(config, dict) else {}
    errors = frame[frame.status == "error"] if not frame.empty else frame
    memory = config.get("memory", {}) if isinstance(config, dict) else {}
    config_file = run_dir / "config.yaml"
    config_text = read_text(config_file, CONFIG_BYTES) if config_file.is_file() else ""
    return {
        "name": name,
        "path": run_dir.name,
        "run_id": meta.get("run_id", ""),
        "config_hash": meta.get("config_hash", ""),
        "versions": meta.get("versions", {}),
        "load_from": (memory or {}).get("load_from") or "",
        "errors": [
            {"task": r["task"], "agent": r["agent"], "episode": int(r["episode"]), "error": r["error"]}
            for r in errors.to_dict("records")
        ],
        "config": config_text,
    }


def _images(
    summary: pd.DataFrame, cost: pd.DataFrame, varying: list[str], configs: list[Any], image_dir: Path, prefix: str
) -> dict[str, str]:
    """frontier.png (and heatmap.png for a β × k sweep) beside the report, and inline as base64."""
    images: dict[str, str] = {}
    points, axis = frontier_points(summary, cost)
    if points:
        png = io.BytesIO()
        plot_frontier(points, axis, png)
        write_file(image_dir / f"{prefix}frontier.png", png.getvalue())
        images["frontier"] = _b64(png.getvalue())
    grid = sweep_axes(varying)
    if grid is not None and not summary.empty:
        main = str((configs[0].get("agent") or {}).get("name", "")) if configs and isinstance(configs[0], dict) else ""
        agent = main if main in set(summary.agent) else str(summary.agent.iloc[0])
        score, count = heatmap_grid(summary, agent, *grid)
        png = io.BytesIO()
        plot_heatmap(score, count, agent, png)
        write_file(image_dir / f"{prefix}heatmap.png", png.getvalue())
        images["heatmap"] = _b64(png.getvalue())
    return images


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (NaN → null)."""
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):  # an unbounded interval (too few pairs): said in words
        return "-inf" if value < 0 else "inf"
    return value


def _inline_json(data: dict[str, Any]) -> str:
    """JSON safe inside <script>: every `<` escaped, so no text in it can close the element."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, default=str).replace("<", "\\u003c")


def _asset(name: str) -> str:
    return importlib.resources.files("jitrl_bench").joinpath(f"results/assets/{name}").read_text(encoding="utf-8")


__all__ = ["PricesConfig", "write_report"]
