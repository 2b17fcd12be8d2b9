"""Memory streams: the unit a scheduler hands out, and what `run.shard=i/n` slices.

A stream is one agent's episodes that depend on each other, in the order a sequential run plays them. An agent whose
learning stays inside a task (memory partitioned by task, notes scoped to the task; or an agent that learns nothing)
has one stream per task; an agent that reads on one task what it wrote on another (one memory shared across tasks,
workflows shared by a site) has one stream over all tasks, task after task. Streams share nothing, so they can run
anywhere and in any order, and each one's results equal a sequential run's.

With a memory service (`run.ray.shared_memory=service`), an agent that reads across tasks has one stream per task
instead, `shared`: the streams run at once and read each other's committed episodes through the service, so what an
episode reads depends on what was committed when it started (see `run/cluster/remote.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jitrl_bench.checks import BadValue

Unit = tuple[str, int, str]
"""(task, episode, agent): one episode to play."""


@dataclass(frozen=True)
class Stream:
    agent: str
    tasks: tuple[str, ...]
    """One task, or every task of the run in order (an agent that learns across tasks)."""
    across_tasks: bool = False
    shared: bool = False
    """One task of an agent that reads across tasks: it reads every task's committed memory, through the service."""

    @property
    def key(self) -> str:
        return f"{self.agent}@{'*' if self.across_tasks else self.tasks[0]}"

    def units(self, episodes: int) -> list[Unit]:
        return [(task, episode, self.agent) for task in self.tasks for episode in range(episodes)]


@dataclass(frozen=True)
class AgentShape:
    """What a scheduler needs to know of an agent to cut its streams."""

    name: str
    within_task: bool
    """Nothing the agent learns on one task is read on another (always true of an agent that learns nothing)."""


def plan(tasks: Sequence[str], agents: Iterable[AgentShape], service: bool = False) -> list[Stream]:
    """The run's streams, in the order a sequential run starts them (task-major, agents in config order). With a
    memory `service`, an agent that reads across tasks has a shared stream per task too."""
    streams: list[Stream] = []
    shapes = list(agents)
    for shape in shapes:
        if not shape.within_task and not service:
            streams.append(Stream(shape.name, tuple(tasks), across_tasks=True))
    for task in tasks:
        streams += [Stream(s.name, (task,), shared=not s.within_task) for s in shapes if s.within_task or service]
    return streams


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, streams: Sequence[Stream]) -> list[Stream]:
        """This shard's streams: every count-th stream of the plan, starting at index (round robin, so each shard
        gets a similar mix of tasks and agents)."""
        return [s for i, s in enumerate(streams) if i % self.count == self.index]


SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(value: str) -> Shard:
    """`run.shard=i/n`: shard i of n, 0 <= i < n."""
    match = SHARD.match(value.strip())
    if match is None:
        raise BadValue("shard", value, "i/n, e.g. 0/4 for the first of four shards (0 <= i < n)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise BadValue("shard", value, f"i/n needs 0 <= i < n (got i={index}, n={count})")
    return Shard(index, count)
