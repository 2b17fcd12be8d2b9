"""Assemble a run from its spec (env, policy, agents, memory), play it, and write its tables.

Everything cheap comes first (the run directory is claimed and its config written), then what is expensive (the
policy, the embedder, the envs), so a bad folder or a config clash costs no model load.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console

from jitrl_bench.agents.notebook import NOTES, Notebook, source_notes
from jitrl_bench.config import RunSpec, config_hash, installed_versions, resolved_yaml
from jitrl_bench.contract import Agent, BuildContext, Policy
from jitrl_bench.errors import UserError
from jitrl_bench.jitrl.embed import CachedEmbedder, Embedder
from jitrl_bench.jitrl.memory import ExperienceMemory
from jitrl_bench.logs import log_to
from jitrl_bench.paths import results_dir
from jitrl_bench.results.report import write_report
from jitrl_bench.results.tables import write_summary
from jitrl_bench.rundir import CONFIG, RunDirectory, existing_run
from jitrl_bench.runner import Protocol, new_run_id, run_all


class RunMemories:
    """Opens each learning agent's memory under <run>/memory/<agent>/; loads the embedder once, on first use."""

    def __init__(self, spec: RunSpec, run_dir: RunDirectory, committed: set[str], fresh: bool) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.committed = committed
        self.fresh = fresh
        self._embedder: Embedder | None = None

    @property
    def frozen(self) -> bool:
        return self.spec.memory.frozen

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = CachedEmbedder(self.spec.memory.embedder.make())
        return self._embedder

    def notebook(self, agent: str) -> Notebook:
        notebook = Notebook(self.run_dir.path / "memory" / agent / NOTES, self.committed.__contains__)
        source = self.spec.memory.load_from
        if source and self.fresh and len(notebook) == 0:
            folder, committed = source_folder(Path(source), agent)
            notebook.extend(source_notes(folder, committed))
        return notebook

    def open(self, agent: str, gamma: float) -> tuple[ExperienceMemory, Embedder]:
        embedder = self.embedder()
        folder = self.run_dir.path / "memory" / agent
        committed, zero_fill = self.committed.__contains__, self.spec.reward.zero_fill
        memory = self.spec.memory.open(folder, embedder.dim, gamma, embedder.name, committed, zero_fill)
        if memory.report.dropped:
            Console(stderr=True).print(f"memory {folder}: dropped {len(memory.report.dropped)} cut record(s)")
        source = self.spec.memory.load_from
        if source and self.fresh and len(memory) == 0:
            memory.import_from(source_memory(Path(source), agent, embedder, gamma))
        return memory, embedder


def execute(spec: RunSpec, console: Console | None = None) -> Path:
    """Run (or resume) the spec; return the run directory."""
    console = console or Console()
    digest = config_hash(spec.raw)
    path = Path(spec.run.dir) if spec.run.dir else results_dir("runs", new_run_id())
    run_dir = RunDirectory(path)
    run_id = claim(run_dir, spec, digest)
    finished = run_dir.finished()
    if finished:
        console.print(f"resuming {path}: {sum(r.episode >= 0 for r in finished)} episodes already finished")
    with log_to(path / "run.log"):
        spec.env.use_run_dir(path)
        policy = spec.policy.make()
        try:
            memories = RunMemories(spec, run_dir, {r.episode_uid for r in finished}, fresh=not finished)
            agents = build_agents(spec, policy, memories, run_id, digest)
            for agent in agents:
                agent.restore(finished)
            protocol = Protocol(spec.env.name, policy.name, run_id, digest, policy.hardware)
            rewards = spec.reward.make(policy)
            run_all(run_dir, spec.env.task_names(), spec.env.make, agents, spec.run, protocol, console, rewards)
        finally:
            policy.close()  # e.g. stop the vLLM engine or the server that policy.server=auto started
            write_summary(path, console=console)
        report = write_report([path], path / "report.html")
    console.print(f"report: {report}")
    return path


def build_agents(spec: RunSpec, policy: Policy, memories: RunMemories, run_id: str, digest: str) -> list[Agent]:
    ctx = BuildContext(policy, spec.run.temperature, memories, run_id, digest)
    return [config.build(ctx) for config in (spec.agent, *spec.baselines)]


def claim(run_dir: RunDirectory, spec: RunSpec, digest: str) -> str:
    """Write config.yaml for a new run; for an existing one, refuse a different config (resume must not mix)."""
    config_path = run_dir.path / CONFIG
    if config_path.exists():
        try:
            old = OmegaConf.load(config_path)
            old_digest, old_id = str(old._meta.config_hash), str(old._meta.run_id)
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
    meta = OmegaConf.create({"_meta": {"run_id": run_id, "config_hash": digest, "versions": installed_versions()}})
    tmp = config_path.with_suffix(".tmp")
    tmp.write_text(OmegaConf.to_yaml(meta) + resolved_yaml(spec.raw))
    tmp.replace(config_path)
    return run_id


def source_folder(source: Path, agent: str) -> tuple[Path, Callable[[str], bool] | None]:
    """`memory.load_from` names a run directory (its committed episodes only) or a bare memory folder."""
    if not (source / "episodes.jsonl").exists():
        return source, None
    committed = {r.episode_uid for r in existing_run(source).finished()}
    return source / "memory" / agent, committed.__contains__


def source_memory(source: Path, agent: str, embedder: Embedder, gamma: float) -> ExperienceMemory:
    folder, committed = source_folder(source, agent)
    if not (folder / "entries.jsonl").exists():
        raise UserError(f"memory.load_from={source}: no memory for agent {agent!r} there ({folder}/entries.jsonl)")
    return ExperienceMemory(
        folder, embedder.dim, gamma=gamma, embedder=embedder.name, committed=committed, read_only=True
    )
