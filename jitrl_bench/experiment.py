"""Assemble a run from its spec (env, policy, agents, memory), play it, and write its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console

from jitrl_bench.agents.base import Agent
from jitrl_bench.config import RunSpec, config_hash, resolved_yaml
from jitrl_bench.errors import UserError
from jitrl_bench.jitrl.memory import ExperienceMemory
from jitrl_bench.paths import PROJECT_ROOT
from jitrl_bench.results import write_summary
from jitrl_bench.runner import Protocol, RunDirectory, new_run_id, run_all


def execute(spec: RunSpec, console: Console | None = None) -> Path:
    """Run (or resume) the spec; return the run directory."""
    console = console or Console()
    digest = config_hash(spec.raw)
    path = Path(spec.run.dir) if spec.run.dir else PROJECT_ROOT / "results" / "runs" / new_run_id()
    run_dir = RunDirectory(path)
    run_id = _claim(run_dir, spec, digest)
    finished = run_dir.finished()
    committed = {r.episode_uid for r in finished}
    if finished:
        console.print(f"resuming {path}: {sum(r.episode >= 0 for r in finished)} episodes already finished")

    if hasattr(spec.env, "har_dir") and not spec.env.har_dir:
        spec.env.har_dir = str(path / "har")  # web episodes keep their network traces with the run (regrade reads them)
    policy = spec.policy.make()
    agent_cfgs = [spec.agent, *spec.baselines]
    embedder = spec.memory.embedder.make() if any(getattr(c, "uses_memory", False) for c in agent_cfgs) else None
    agents: list[Agent] = []
    for cfg in agent_cfgs:
        memory = None
        if getattr(cfg, "uses_memory", False):
            assert embedder is not None
            memory = _open_memory(spec, path / "memory" / cfg.name, cfg.gamma, embedder, committed, fresh=not finished)
        agent = cfg.build(
            policy=policy, temperature=spec.run.temperature, memory=memory, embedder=embedder,
            provenance=(run_id, digest),
        )  # fmt: skip
        if hasattr(agent, "episodes_done"):
            for r in finished:
                if r.agent == agent.name and r.episode >= 0:
                    agent.episodes_done[r.task] = agent.episodes_done.get(r.task, 0) + 1
        agents.append(agent)

    protocol = Protocol(env=spec.env.name, policy=policy.name, run_id=run_id, config_hash=digest)
    try:
        run_all(
            run_dir,
            spec.env.task_names(),
            spec.env.make,
            agents,
            spec.run,
            protocol,
            lambda: policy.tokens_used,
            console,
        )
    finally:
        close = getattr(policy, "close", None)
        if callable(close):  # e.g. stop the vLLM server that policy.server=auto started
            close()
        write_summary(path, console=console)
    return path


def _claim(run_dir: RunDirectory, spec: RunSpec, digest: str) -> str:
    """Write config.yaml for a new run; for an existing one, refuse a different config (resume must not mix)."""
    config_path = run_dir.path / "config.yaml"
    if config_path.exists():
        old: Any = OmegaConf.load(config_path)
        old_digest = old.get("_meta", {}).get("config_hash")
        if old_digest != digest:
            raise UserError(
                f"run.dir {run_dir.path} holds a run with another config ({old_digest} vs {digest}): "
                "use a new run.dir, or the same overrides to resume it"
            )
        return str(old._meta.run_id)
    run_id = new_run_id()
    meta = f"_meta:\n  run_id: {run_id}\n  config_hash: {digest}\n"
    tmp = config_path.with_suffix(".tmp")
    tmp.write_text(meta + resolved_yaml(spec.raw))
    tmp.replace(config_path)
    return run_id


def _open_memory(
    spec: RunSpec, folder: Path, gamma: float, embedder: Any, committed: set[str], fresh: bool
) -> ExperienceMemory:
    memory: ExperienceMemory = spec.memory.open(
        folder, embedder.dim, gamma, embedder.name, committed=committed.__contains__
    )
    if memory.report.dropped:
        Console(stderr=True).print(f"memory {folder}: dropped {len(memory.report.dropped)} cut record(s)")
    source = spec.memory.load_from
    if source and fresh and len(memory) == 0:
        memory.import_from(_source_memory(Path(source), folder.name, embedder, gamma))
    return memory


def _source_memory(source: Path, agent: str, embedder: Any, gamma: float) -> ExperienceMemory:
    """`memory.load_from` names a run directory (its committed episodes only) or a bare memory folder."""
    run_dir = source if (source / "episodes.jsonl").exists() else None
    folder = source / "memory" / agent if run_dir else source
    if not (folder / "entries.jsonl").exists():
        raise UserError(f"memory.load_from={source}: no memory for agent {agent!r} there ({folder}/entries.jsonl)")
    committed = {r.episode_uid for r in RunDirectory(run_dir).finished()} if run_dir else None
    return ExperienceMemory(
        folder,
        embedder.dim,
        gamma=gamma,
        embedder=embedder.name,
        committed=committed.__contains__ if committed is not None else None,
        read_only=True,
    )
