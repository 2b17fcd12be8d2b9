"""Assemble a run from its spec (env, policy, agents, memory), play it, and write its tables.

Everything cheap comes first (the run directory is claimed and its config written), then what is expensive (the
policy, the embedder, the envs), so a bad folder or a config clash costs no model load.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console

from jitrl_bench import terminal
from jitrl_bench.config import config_hash, installed_versions, resolved_yaml
from jitrl_bench.contract import Agent, BuildContext, Policy
from jitrl_bench.errors import UserError
from jitrl_bench.logs import log_to
from jitrl_bench.paths import results_dir
from jitrl_bench.records import SCHEMA_VERSION, EpisodeRecord
from jitrl_bench.results.report import write_report
from jitrl_bench.results.tables import write_summary
from jitrl_bench.run.episode import Provenance, new_run_id
from jitrl_bench.run.local import run_all
from jitrl_bench.run.memories import RunMemories
from jitrl_bench.run.protocols import parts
from jitrl_bench.run.received import read_config
from jitrl_bench.run.repeats import replicas
from jitrl_bench.run.rundir import CONFIG, RunDirectory
from jitrl_bench.run.spec import RunSpec
from jitrl_bench.terminal import say


def execute(spec: RunSpec, console: Console | None = None, show: bool = True) -> Path:
    """Run (or resume) the spec; return the run directory. A run of several replicas (`run.repeats`) or of a
    protocol's splits (`run.protocol`) plays each as a sub-run of its folder, in order, then tables them together."""
    console = console or terminal.console()
    digest = config_hash(spec.raw)
    path = Path(spec.run.dir) if spec.run.dir else results_dir("runs", new_run_id())
    run_dir = RunDirectory(path)
    run_id = claim(run_dir, spec, digest)
    if spec.run.repeats == 1 and spec.run.protocol == "online":
        play(spec, run_dir, run_id, digest, console, show=show)
    else:  # each sub-run's spec is built once the one before it has played (the test split loads the train's memory)
        subs = replicas(spec, path) if spec.run.repeats > 1 else (sub for _, sub in parts(spec, path))
        for sub in subs:
            say(console, f"{Path(str(sub.run.dir)).relative_to(path)}: seeds from {sub.run.seed}, "
                         f"{sub.run.episodes} episodes of {', '.join(sub.tasks())}")  # fmt: skip
            execute(sub, console, show=False)
        write_summary(path, console=console if show else None)
    if show:
        with log_to(path / "run.log"):
            report = write_report([path], path / "report.html")
        say(console, f"report: {report}")
    return path


def play(spec: RunSpec, run_dir: RunDirectory, run_id: str, digest: str, console: Console, show: bool) -> None:
    """Play what the run directory lacks, then write its tables (printed when `show`)."""
    for repair in run_dir.recover():  # a torn last commit: made whole, or its episode played again
        say(console, repair, "resume:", "yellow")
    finished = run_dir.finished()
    if finished:
        say(console, f"resuming {run_dir.path}: {sum(r.episode >= 0 for r in finished)} episodes already finished")
    with log_to(run_dir.path / "run.log"):
        memories = RunMemories(spec, run_dir, {r.episode_uid for r in finished}, fresh=not finished, run_id=run_id)
        try:
            if spec.run.executor == "ray":  # the workers load the policy and the envs; this process only writes
                from jitrl_bench.run.cluster.scheduler import run_on_ray

                run_on_ray(spec, memories, finished, run_id, digest, console)
            else:
                run_here(spec, memories, finished, run_id, digest, console)
        finally:
            write_summary(run_dir.path, console=console if show else None)


def run_here(spec: RunSpec, memories: RunMemories, finished: list[EpisodeRecord], run_id: str, digest: str,
             console: Console) -> None:  # fmt: skip
    """The local executor: the policy, agents and envs in this process (`run/local.py` schedules the episodes)."""
    spec.env.use_run_dir(memories.run_dir.path)
    policy = spec.policy.make()
    try:
        agents = build_agents(spec, policy, memories, run_id, digest)
        for agent in agents:
            agent.restore(finished)
        protocol = Provenance(spec.env.name, policy.name, run_id, digest, policy.hardware)
        rewards = spec.reward.make(policy)
        tasks = spec.tasks()
        run_all(memories.run_dir, tasks, spec.env.make, agents, spec.run, protocol, console, rewards)
    finally:
        policy.close()  # e.g. stop the vLLM engine or the server that policy.server=auto started


def build_agents(spec: RunSpec, policy: Policy, memories: RunMemories, run_id: str, digest: str) -> list[Agent]:
    ctx = BuildContext(policy, spec.run.temperature, memories, run_id, digest)
    return [config.build(ctx) for config in (spec.agent, *spec.baselines)]


def claim(run_dir: RunDirectory, spec: RunSpec, digest: str) -> str:
    """Write config.yaml for a new run; for an existing one, refuse a different config (resume must not mix)."""
    config_path = run_dir.path / CONFIG
    if config_path.exists():
        try:
            old = read_config(run_dir.path)  # plain data: a received run's `${...}` is never resolved
            old_digest, old_id = str(old["_meta"]["config_hash"]), str(old["_meta"]["run_id"])
        except Exception as e:  # a hand-edited or cut file: say which and what to do
            raise UserError(
                f"{config_path} is not a jitrl-bench run config ({type(e).__name__}): use a new run.dir"
            ) from None
        if old_digest != digest:
            raise UserError(
                f"run.dir {run_dir.path} holds a run with another config ({old_digest} vs {digest}): "
                "use a new run.dir, or the same overrides to resume it"
            )
        return old_id
    if any(p.name not in ("run.log", "config.tmp") and not p.name.startswith(".") for p in run_dir.path.iterdir()):
        raise UserError(
            f"run.dir {run_dir.path} is not empty and holds no jitrl-bench run (no {CONFIG}): use a new or empty folder"
        )
    run_id = new_run_id()
    meta = OmegaConf.create(
        {"_meta": {"run_id": run_id, "config_hash": digest, "schema_version": SCHEMA_VERSION,
                   "versions": installed_versions()}}
    )  # fmt: skip
    if spec.resolved:  # e.g. policy.dtype=auto: what this machine chose, and why
        meta._meta.resolved = spec.resolved
    tmp = config_path.with_suffix(".tmp")
    tmp.write_text(OmegaConf.to_yaml(meta) + resolved_yaml(spec.raw))
    tmp.replace(config_path)
    return run_id
