"""The run as typed objects: one checked config object per group, and the checks across groups, before anything loads.

`config.py` composes the YAML (Hydra) and builds each group's class; this module puts them together as the `RunSpec`
that every executor, table and command reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from omegaconf import DictConfig

from jitrl_bench.checks import check_tree
from jitrl_bench.config import compose_config, instantiate_group, typed
from jitrl_bench.contract import AgentConfig, EnvConfig, PolicyConfig
from jitrl_bench.errors import UserError
from jitrl_bench.memory.store import MemoryConfig
from jitrl_bench.policies.dtype import resolve_auto
from jitrl_bench.prices import PricesConfig
from jitrl_bench.rewards.base import RewardConfig
from jitrl_bench.run.settings import DEFAULT_REFERENCE, RunConfig


@dataclass
class RunSpec:
    """The composed, validated run: one typed object per config group."""

    env: EnvConfig
    policy: PolicyConfig
    agent: AgentConfig
    baselines: list[AgentConfig]
    memory: MemoryConfig
    reward: RewardConfig
    prices: PricesConfig
    run: RunConfig
    raw: DictConfig
    resolved: dict[str, str] = dataclasses.field(default_factory=dict)
    """Keys whose `auto` this machine resolved in `raw`, and why (config.yaml's `_meta.resolved`)."""

    def tasks(self) -> list[str]:
        """The env's tasks this run plays: those `run.tasks` names (in the env's order), else all of them."""
        names = self.env.task_names()
        if self.run.tasks is None:
            return names
        unknown = [t for t in self.run.tasks if t not in names]
        if unknown:
            raise UserError(f"run.tasks: {', '.join(map(str, unknown))} is not a task of this env config; its tasks "
                            f"are {', '.join(names)}")  # fmt: skip
        return [t for t in names if t in self.run.tasks]


def build_spec(cfg: DictConfig) -> RunSpec:
    """Typed objects for every group, each checked (ranges, closed sets) before anything is loaded."""
    run = typed("run", cfg.run, RunConfig)
    check_tree(run, "run")
    dtype = resolve_auto(cfg.policy)  # config.yaml and the hash hold the dtype that runs, not `auto`
    # an overlay may declare more baselines than run.baselines asks for: these run, in run.baselines' order
    composed = dict((cfg.get("baselines") or {}).items())
    baselines = [
        instantiate_group(f"baselines.{key}", composed[key]) for key in dict.fromkeys(run.baselines) if key in composed
    ]
    memory = instantiate_group("memory", cfg.memory)
    prices = instantiate_group("prices", cfg.prices)
    if not isinstance(prices, PricesConfig):
        raise UserError(f"prices._target_ must be {PricesConfig.__module__}.PricesConfig")
    if not isinstance(memory, MemoryConfig):
        raise UserError(f"memory._target_ must be {MemoryConfig.__module__}.MemoryConfig")
    spec = RunSpec(
        env=instantiate_group("env", cfg.env),
        policy=instantiate_group("policy", cfg.policy),
        agent=instantiate_group("agent", cfg.agent),
        baselines=baselines,
        memory=memory,
        reward=instantiate_group("reward", cfg.reward),
        prices=prices,
        run=run,
        raw=cfg,
        resolved={"policy.dtype": str(dtype)} if dtype else {},
    )
    names = [spec.agent.name, *(b.name for b in baselines)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"two agents named {twice[0]!r} (agent and run.baselines): set a distinct agent.name")
    reference = spec.run.compare_to
    if reference is not None and reference not in names and reference != DEFAULT_REFERENCE:  # static may not play
        raise UserError(
            f"run.compare_to={reference!r} names no agent of this run ({', '.join(names)}): name one of them, or "
            "run.compare_to=null for no comparison"
        )
    if run.protocol != "online":
        _check_protocol(spec)
    return spec


def load_spec(overrides: list[str]) -> RunSpec:
    return build_spec(compose_config(overrides))


def _check_protocol(spec: RunSpec) -> None:
    """The protocol's splits against the run's tasks and memory, one line each, before anything loads."""
    run, tasks = spec.run, spec.tasks()
    if run.protocol == "train_test":
        held = [t for t in run.test_tasks if t in tasks]
        unknown = [t for t in run.test_tasks if t not in tasks]
        if unknown or (held and len(held) == len(tasks)):
            raise UserError(
                f"run.test_tasks={list(run.test_tasks)}: "
                + (f"{', '.join(unknown)} is not a task of this run" if unknown else "leaves no task to train on")
                + f" (its tasks: {', '.join(tasks)})"
            )
        same = {k: v for k, v in spec.env.test_split().items() if str(spec.raw.env.get(k)) == v}
        if same:
            key, value = next(iter(same.items()))
            raise UserError(
                f"env.{key}={value} is {spec.env.name}'s test split, which run.protocol=train_test keeps for its "
                f"test episodes: learn on another (e.g. env.{key}=train)"
            )
        if held and "task" in spec.memory.partition_by:
            raise UserError(
                f"run.test_tasks={held} holds out tasks, but memory.partition_by={list(spec.memory.partition_by)} "
                "keeps each task's memory apart, so a held-out task would read nothing the train split wrote: "
                "add memory.partition_by=[] (one memory across tasks)"
            )
    elif run.protocol == "stream" and len(tasks) < 2:
        raise UserError(f"run.protocol=stream needs at least two tasks in order; this run has {tasks}")
