"""`jitrl-bench sweep`: Hydra's own multirun (its sweeper and launchers: basic, joblib) over our run function, then one
aggregated table. Every combination is composed and validated before the first job starts."""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from jitrl_bench.config import baselines_of, build_spec, compose_config
from jitrl_bench.errors import UserError
from jitrl_bench.paths import CONFIG_DIR, results_dir
from jitrl_bench.results.report import write_report
from jitrl_bench.results.tables import aggregate, rich_table, to_markdown
from jitrl_bench.rundir import make_writable_dir


def combinations(overrides: list[str]) -> list[list[str]]:
    """Expand comma lists / range() sweeps into the runs Hydra's basic sweeper will launch (hydra.* left out)."""
    science = [o for o in overrides if not o.startswith(("hydra.", "hydra/"))]
    try:
        parsed = OverridesParser.create().parse_overrides(science)
    except Exception as e:  # hydra raises OverrideParseException with a multi-line message
        raise UserError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    axes = []
    for o in parsed:
        key = o.get_key_element()
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        axes.append([f"{key}={v}" for v in values])
    return [list(combo) for combo in itertools.product(*axes)]


def run_sweep(overrides: list[str], console: Console) -> Path:
    combos = combinations(overrides)
    baselines = set()
    for combo in combos:
        build_spec(compose_config(combo))  # fail fast, before any job, on any bad combination
        baselines.add(tuple(baselines_of(combo)))
    if len(baselines) > 1:
        raise UserError("run.baselines (and agent) must give the same baselines in every run of a sweep")
    sweep_dir = _sweep_dir(overrides)
    make_writable_dir(sweep_dir, "run.dir")
    console.print(f"sweep: {len(combos)} runs → {sweep_dir}")
    argv = [
        "jitrl-bench",
        "--multirun",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.num}",
        "hydra.job.chdir=false",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        *baselines.pop(),  # each job composes its baseline agents as `jitrl-bench run` does
        *[o for o in overrides if not o.startswith("run.dir=")],
    ]
    saved, sys.argv = sys.argv, argv
    try:
        _hydra_entry()
    except SystemExit as e:  # hydra exits on its own errors (e.g. an unknown launcher)
        if e.code not in (0, None):
            raise UserError(f"hydra multirun failed (exit {e.code}); check the hydra/* overrides") from None
    finally:
        sys.argv = saved
    runs = expand_runs([sweep_dir])
    frame = aggregate(runs)
    frame.to_csv(sweep_dir / "summary.csv", index=False)
    (sweep_dir / "summary.md").write_text(to_markdown(frame) + "\n")
    console.print(rich_table(frame, title=f"sweep {sweep_dir.name}: {len(runs)} runs"))
    console.print(f"report: {write_report(runs, sweep_dir / 'report.html')}")
    return sweep_dir


def sweep_job(cfg: DictConfig) -> None:
    """One multirun job: the composed config, run in Hydra's job directory."""
    from jitrl_bench.experiment import execute

    OmegaConf.set_struct(cfg, False)
    cfg.run.dir = HydraConfig.get().runtime.output_dir
    cfg.run.progress = False
    execute(build_spec(cfg), console=Console(quiet=True))


_hydra_entry = hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)(sweep_job)


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run directories under the given paths: a run (has episodes.jsonl or config.yaml) or a sweep (runs inside)."""
    runs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path}: no such run directory")
        if (path / "episodes.jsonl").exists():
            runs.append(path)
            continue
        inner = sorted((p for p in path.iterdir() if (p / "episodes.jsonl").exists()), key=_natural)
        if not inner:
            raise UserError(f"{path}: neither a run directory (episodes.jsonl) nor a sweep of runs")
        runs.extend(inner)
    return runs


def _sweep_dir(overrides: list[str]) -> Path:
    for o in overrides:
        if o.startswith("run.dir="):
            return Path(o.split("=", 1)[1]).resolve()
    return results_dir("sweeps", time.strftime("%Y%m%d-%H%M%S")).resolve()


def _natural(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)
