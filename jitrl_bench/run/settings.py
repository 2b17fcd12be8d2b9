"""The `run` section of the config: budget, seeds, where the run is written, and where its episodes are played.
`executor`, `shard` and `ray` say where, never what: they stay out of the config hash, so a run started on one
executor resumes on another and the shards of a run share one hash."""

from __future__ import annotations

from dataclasses import dataclass, field

from jitrl_bench.checks import BadValue, Checked, at_least, name, non_empty, one_of
from jitrl_bench.run.streams import Shard, parse_shard

EXECUTORS = ("local", "ray")
PROTOCOLS = ("online", "train_test", "stream")
SHARED_MEMORY = ("stream", "service")
DEFAULT_REFERENCE = "static"
"""The agent the tables compare the others with unless `run.compare_to` names another; a run without it plays has no
comparison (not an error: `run.baselines=[]` is a common choice)."""


@dataclass
class RayConfig(Checked):
    """How `run.executor=ray` reaches its cluster and how many workers it asks for."""

    address: str | None = None
    """None: start a private Ray instance on this machine for the run; `auto`: the cluster this machine belongs to
    (`ray start` ran here); `HOST:PORT`: that cluster's head node."""
    workers: int = 2
    """Worker processes (Ray actors), each playing one memory stream at a time with its own env and policy client."""
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    """Set > 0 when each worker loads the model itself (policy=hf or vllm in process) on a GPU node."""
    retries: int = 2
    """Times an episode is replayed after its worker died (the process was killed, the node was lost)."""
    shared_memory: str = "stream"
    """An agent whose one memory serves every task: `stream` plays its tasks in order on one worker (the results of a
    sequential run); `service` plays its tasks at once on several workers, each episode reading the memory as
    committed when it started (faster; what an episode reads then depends on timing, and is in its steps)."""

    def check(self) -> None:
        at_least("workers", self.workers, 1)
        at_least("cpus_per_worker", self.cpus_per_worker, 0.0)
        at_least("gpus_per_worker", self.gpus_per_worker, 0.0)
        at_least("retries", self.retries, 0)
        one_of("shared_memory", self.shared_memory, SHARED_MEMORY)
        if self.address is not None and self.address != "auto" and ":" not in self.address:
            raise BadValue("address", self.address, "auto, HOST:PORT (the head node's GCS port), or null")


@dataclass
class RunConfig(Checked):
    """Budget and bookkeeping of one run (the `run` section of the config)."""

    episodes: int = 10
    """Episodes per task and agent; memory carries across the episodes of a task."""
    max_steps: int = 20
    """Step budget per episode (truncation)."""
    seed: int = 0
    """Episode e of every agent uses env seed `seed + e` and the same decision RNG stream."""
    temperature: float = 1.0
    """Decision temperature T shared by all agents: a ~ softmax(z'/T); 0 = argmax."""
    baselines: list[str] = field(default_factory=lambda: ["static"])
    """Agents from configs/agent/ run beside `agent` on the same tasks, seeds and budget (composed into the
    config as `baselines.<name>`, so `baselines.static.name=...` overrides one)."""
    dir: str | None = None
    """Run directory; default results/runs/<timestamp>. Re-using a directory resumes it."""
    infra_retries: int = 2
    """Retries of an episode whose infrastructure failed (InfraError: site down, 5xx); then it is recorded as
    `error`, outside success rates."""
    concurrency: int = 1
    """Episodes in flight at once (threads). Useful against a batching server; a learning agent's episodes of one
    task still run in order, so results do not depend on it."""
    progress: bool = True
    compare_to: str | None = DEFAULT_REFERENCE
    """The agent every other is compared with in the tables (paired on task, seed and episode); null: no comparison.
    It changes what is shown, never what is played: out of the config hash."""
    executor: str = "local"
    """Where episodes are played: `local` (threads of this process) or `ray` (a Ray cluster, `run.ray`)."""
    shard: str | None = None
    """`i/n`: play only shard i of n of the run's memory streams (`jitrl-bench merge` joins the shards' folders)."""
    ray: RayConfig = field(default_factory=lambda: RayConfig())
    tasks: list[str] | None = None
    """Play only these of the env's tasks (in the env's order); null: every task the env config names."""
    protocol: str = "online"
    """What is learned from and what is scored (`run/protocols.py`): `online` learns and scores on one stream;
    `train_test` learns on a train split, then scores a test split with memory frozen; `stream` learns over the
    tasks in order, and measures forward transfer and forgetting."""
    test_tasks: list[str] = field(default_factory=list)
    """train_test: the env's tasks held out for the test split (the others are trained on); []: the test split is
    every task again, on seeds the train split never played."""
    test_episodes: int = 5
    """train_test: episodes per task and agent of the test split."""
    repeats: int = 1
    """Independent replicas of the whole run, each with fresh memory and its own seeds (replica r plays seeds
    `seed + r·episodes` onwards), in `<run.dir>/repeats/<r>/`; the tables add pass^k, consistency across replicas and
    the spread of their scores, and give intervals over replicas."""

    def check(self) -> None:
        at_least("episodes", self.episodes, 1)
        at_least("max_steps", self.max_steps, 1)
        at_least("seed", self.seed, 0)
        at_least("temperature", self.temperature, 0.0, "0 acts by argmax")
        for baseline in self.baselines:
            name("baselines", baseline)
        at_least("infra_retries", self.infra_retries, 0)
        at_least("concurrency", self.concurrency, 1)
        if self.compare_to is not None:
            name("compare_to", self.compare_to)
        one_of("executor", self.executor, EXECUTORS)
        at_least("repeats", self.repeats, 1)
        one_of("protocol", self.protocol, PROTOCOLS)
        at_least("test_episodes", self.test_episodes, 1)
        if self.tasks is not None:
            non_empty("tasks", self.tasks)
        if self.protocol != "online" and self.shard is not None:
            raise BadValue("protocol", self.protocol, "online with run.shard (a shard plays part of one stream); "
                           "drop run.shard")  # fmt: skip
        if self.repeats > 1 and self.shard is not None:
            raise BadValue("repeats", self.repeats, "1 with run.shard (a sharded run is one replica until merged); "
                           "drop run.shard, or run each replica as its own run with its own run.seed")  # fmt: skip
        if self.shard is not None:
            parse_shard(self.shard)
            if self.executor == "ray" and self.ray.shared_memory == "service":
                raise BadValue("shard", self.shard, "shards cannot share a memory service (each shard is its own run "
                               "until merged); drop run.shard, or use run.ray.shared_memory=stream")  # fmt: skip

    @property
    def shard_of(self) -> Shard | None:
        return parse_shard(self.shard) if self.shard is not None else None
