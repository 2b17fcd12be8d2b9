"""The Ray scheduler (`run.executor=ray`): memory streams (`streams.py`) played by Ray actors across a cluster, each
finished episode committed here, by the driver, the run directory's only writer.

A worker builds the run's env, policy and reward source from the config text once, then plays the streams it is
given one episode at a time, each against a replica of its agent's memory (`replica.py`). What crosses between the
driver and a worker is the config's YAML, JSON records and raw float32 rows; Ray's own transport carries them.
Where the run needs them, the workers share two actors (`remote.py`): the keeper of the env's copies (WebArena's
instances, leased one episode at a time) and the memory service (one memory over every task, played at once).

Exactly once: an episode is in the run when its line is in episodes.jsonl, which only the driver writes, after the
episode's memory and steps. A worker that dies mid-episode (killed, node lost) is replaced, its stream reopened from
the committed memory, and the episode played again from its seed: it is committed once. A driver killed mid-run
loses the episodes in flight; the same command resumes after the last committed one.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from jitrl_bench.contract import Agent, BuildContext, EpisodeEnv
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.leases import LeaseKeeper
from jitrl_bench.memory.embed import CachedEmbedder, Embedder
from jitrl_bench.records import EpisodeRecord
from jitrl_bench.run.cluster.remote import KeeperLeases, MemoryService, ServiceClient
from jitrl_bench.run.episode import Provenance, Task, error_record, play_episode
from jitrl_bench.run.local import describe, progress_bar
from jitrl_bench.run.memories import RunMemories
from jitrl_bench.run.replica import Learned, StreamMemories, Uses
from jitrl_bench.run.rundir import safe_name
from jitrl_bench.run.spec import RunSpec, build_spec
from jitrl_bench.run.streams import AgentShape, Stream, Unit, plan
from jitrl_bench.run.writer import InOrder, Outcome, RunWriter, Shipped
from jitrl_bench.terminal import say
from jitrl_bench.text import first_line

OK, INFRA, TASK = "ok", "infrastructure", "task"
"""What a worker's `play` returns first: an episode, an infrastructure failure to retry, or a task that cannot run."""


@dataclass(frozen=True)
class Described:
    """What the first worker reports of the run's agents, so the driver never loads a model."""

    agents: dict[str, tuple[bool, Uses]]
    """name → (within_task, what it keeps)."""
    policy: str
    hardware: str
    dim: int
    embedder: str

    def to_json(self) -> str:
        agents = {name: {"within_task": w, **asdict(uses)} for name, (w, uses) in self.agents.items()}
        return json.dumps({"agents": agents, "policy": self.policy, "hardware": self.hardware, "dim": self.dim,
                           "embedder": self.embedder})  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> Described:
        data = json.loads(text)
        agents = {
            n: (bool(a["within_task"]), Uses(bool(a["memory"]), bool(a["notes"]))) for n, a in data["agents"].items()
        }
        return cls(agents, str(data["policy"]), str(data["hardware"]), int(data["dim"]), str(data["embedder"]))


class StreamWorker:
    """One Ray actor. Its methods run one at a time, in the order the driver called them."""

    def __init__(self, config_yaml: str, run_dir: str, name: str, keeper: Any, service: Any) -> None:
        logging.getLogger().setLevel(logging.WARNING)
        config = OmegaConf.create(config_yaml)
        assert isinstance(config, DictConfig)
        self.spec: RunSpec = build_spec(config)
        shared = self.spec.env.shared()
        if shared is not None and keeper is not None:  # the env's copies are leased from the run's one keeper
            shared.lease_from(KeeperLeases(keeper), name)
        self.scratch = Path(tempfile.mkdtemp(prefix="jitrl-worker-"))
        artifacts = Path(run_dir)  # web artifacts (HAR files) beside the run when this node shares its filesystem
        self.spec.env.use_run_dir(artifacts if os.access(artifacts, os.W_OK) else self.scratch)
        self.policy = self.spec.policy.make()
        self.rewards = self.spec.reward.make(self.policy)
        self.configs = {c.name: c for c in (self.spec.agent, *self.spec.baselines)}
        self._embedder: Embedder | None = None
        self._env: tuple[str, EpisodeEnv] | None = None
        self._streams: dict[str, Playing] = {}
        self._protocol: Provenance | None = None
        self._service = ServiceClient(service) if service is not None else None

    def pid(self) -> int:
        return os.getpid()

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = CachedEmbedder(self.spec.memory.embedder.make())
        return self._embedder

    def describe(self) -> str:
        agents: dict[str, tuple[bool, Uses]] = {}
        for name in self.configs:
            memories = self._memories(self.scratch / "describe" / name, Learned())
            agent = self._build(name, memories)
            agents[name] = (agent.within_task, memories.uses)
        dim, embedder = (self._embedder.dim, self._embedder.name) if self._embedder is not None else (0, "")
        return Described(agents, self.policy.name, self.policy.hardware, dim, embedder).to_json()

    def open(self, key: str, agent: str, protocol: str, seed: str, vectors: bytes, finished: str,
             cursor: int | None) -> None:  # fmt: skip
        """Start playing a stream: its agent over a replica of the memory it can read, told what it already did.
        `cursor`: a shared stream's place in the memory service when the seed was read (None: not shared)."""
        self._protocol = Provenance(**json.loads(protocol))
        folder = self.scratch / "streams" / safe_name(key)
        shutil.rmtree(folder, ignore_errors=True)  # a replica starts from the seed alone
        memories = self._memories(folder, Learned.parse(seed, vectors))
        built = self._build(agent, memories)
        built.restore([EpisodeRecord.from_json(line) for line in finished.splitlines() if line.strip()])
        self._streams[key] = Playing(built, memories, agent, cursor)

    def play(self, key: str, task: str, episode: int) -> tuple[str, str, bytes]:
        assert self._protocol is not None, "open a stream first"
        playing = self._streams[key]
        try:
            env = self._env_for(task)
        except UserError as e:
            return TASK, str(e), b""
        if self._service is not None and playing.cursor is not None:  # what other tasks committed since
            learned, playing.cursor = self._service.since(playing.name, key, playing.cursor)
            playing.known.update(playing.memories.absorb(learned))
        try:
            played = play_episode(playing.agent, Task(task, env), episode, self.spec.run, self._protocol, self.rewards)
        except InfraError as e:
            return INFRA, str(e), b""
        text, vectors = Shipped.of(played, playing.memories.take(), playing.known).pack()
        playing.known = {}
        return OK, text, vectors

    def close_stream(self, key: str) -> None:
        playing = self._streams.pop(key)
        shutil.rmtree(playing.memories.folder, ignore_errors=True)

    def close(self) -> None:
        if self._env is not None:
            self._env[1].close()
        self.policy.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _memories(self, folder: Path, seed: Learned) -> StreamMemories:
        return StreamMemories(folder, self.spec.memory, self.spec.reward.zero_fill, self.embedder, seed)

    def _build(self, agent: str, memories: StreamMemories) -> Agent:
        run_id = self._protocol.run_id if self._protocol else ""
        digest = self._protocol.config_hash if self._protocol else ""
        built: Agent = self.configs[agent].build(BuildContext(self.policy, self.spec.run.temperature, memories,
                                                              run_id, digest))  # fmt: skip
        return built

    def _env_for(self, task: str) -> EpisodeEnv:
        """One env at a time: a worker plays one stream, and a stream one task after another."""
        if self._env is not None and self._env[0] == task:
            return self._env[1]
        if self._env is not None:
            self._env[1].close()
            self._env = None
        self._env = (task, self.spec.env.make(task))
        return self._env[1]


def run_on_ray(spec: RunSpec, memories: RunMemories, finished: list[EpisodeRecord], run_id: str, digest: str,
               console: Console) -> None:  # fmt: skip
    """Play every stream not yet committed on the cluster `run.ray` names; commit here, in arrival order."""
    settings = spec.run.ray
    private = settings.address is None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if private:  # Ray turns _node_ip_address=127.0.0.1 into this machine's address, its servers then listening on
        # every interface, unless this switch (meant for Windows/macOS) says it forms no cluster: then all bind loopback
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not private and "RAY_AUTH_MODE" not in os.environ and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"  # a cluster this machine started uses its token; a client must say so
    import ray  # after the settings above: Ray reads them when it is imported
    from ray.exceptions import RayActorError

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's notices go to its session logs, not the user's terminal
    cpus = max(1, round(settings.workers * settings.cpus_per_worker)) if private else None
    host = (settings.address or "").rpartition(":")[0]
    loopback = "127.0.0.1" if private or host in ("127.0.0.1", "localhost") else None  # a head on this machine only
    if host:
        reachable(settings.address or "")  # Ray itself retries an absent head for minutes
    try:
        ray.init(address=settings.address or "local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=False, _node_ip_address=loopback)  # fmt: skip
    except ConnectionError as e:
        raise UserError(
            f"run.ray.address={settings.address}: no Ray cluster answers there ({first_line(e)}); start one with "
            "`ray start --head`, or set run.ray.address=null for a Ray instance of this run's own"
        ) from None
    config_yaml = OmegaConf.to_yaml(spec.raw)
    actor = ray.remote(num_cpus=settings.cpus_per_worker, num_gpus=settings.gpus_per_worker)(StreamWorker)
    shared = spec.env.shared()
    actors = Actors(
        keeper=None if shared is None else ray.remote(num_cpus=0)(LeaseKeeper).remote(shared.copies, shared.reset_mode),
        service=ray.remote(num_cpus=0)(MemoryService).remote() if settings.shared_memory == "service" else None,
    )
    numbers = itertools.count()

    def new_worker() -> Worker:
        name = f"worker-{next(numbers)}"
        return Worker(actor.remote(config_yaml, str(memories.run_dir.path), name, actors.keeper, actors.service), name)

    workers = [new_worker() for _ in range(settings.workers)]
    try:  # every worker loads its models now, at once; the first one describes the run's agents
        described = Described.parse(ray.get([worker.handle.describe.remote() for worker in workers])[0])
        shapes = [AgentShape(name, within) for name, (within, _) in described.agents.items()]
        streams = plan(spec.tasks(), shapes, service=actors.service is not None)
        shard = spec.run.shard_of
        if shard is not None:
            streams = shard.take(streams)
        protocol = Provenance(spec.env.name, described.policy, run_id, digest, described.hardware)
        uses = {name: uses for name, (_, uses) in described.agents.items()}
        writer = RunWriter(memories, uses, described.dim, described.embedder)
        _drive(ray, RayActorError, workers, new_worker, actors, streams, writer, finished, protocol, spec, console)
    finally:
        for handle in [worker.handle for worker in workers] + [a for a in (actors.keeper, actors.service) if a]:
            ray.kill(handle)
        if private:
            ray.shutdown()


def _drive(ray: Any, died: type[Exception], workers: list[Worker], new_worker: Callable[[], Worker], actors: Actors,
           streams: list[Stream], writer: RunWriter, finished: list[EpisodeRecord], protocol: Provenance, spec: RunSpec,
           console: Console) -> None:  # fmt: skip
    """Hand streams to idle workers, collect episodes as they finish, commit them in the sequential run's order
    (a shared stream's as they arrive, and then to the memory service)."""
    run = spec.run
    committed = {(r.task, r.episode, r.agent) for r in finished}
    history = list(finished)
    agents = list(dict.fromkeys(s.agent for s in streams))
    ours = {u: s for s in streams for u in s.units(run.episodes)}
    tasks = spec.tasks()
    order = [(t, e, a) for t in tasks for e in range(run.episodes) for a in agents if (t, e, a) in ours]
    eager = {u for s in streams if s.shared for u in s.units(run.episodes)}
    arrived = InOrder([u for u in order if u not in committed], eager)
    published: dict[str, int] = {}  # agent → episodes in the memory service
    plays = {s.key: [u for u in s.units(run.episodes) if u not in committed] for s in streams}
    queue = [s for s in streams if plays[s.key]]
    idle = list(workers)
    busy: dict[Any, tuple[Worker, Stream, Unit]] = {}
    failures: dict[Unit, int] = {}
    scores: dict[str, list[float]] = {}
    steps_played = 0

    def open_on(worker: Worker, stream: Stream) -> None:
        seed = writer.seed(stream)
        rows = "\n".join(r.to_json() for r in history if r.agent == stream.agent and r.task in stream.tasks)
        cursor = published.get(stream.agent, 0) if stream.shared else None  # the seed holds what was published
        opened = (stream.key, stream.agent, json.dumps(asdict(protocol)), seed.header(), seed.vectors, rows, cursor)
        worker.handle.open.remote(*opened)

    def submit(worker: Worker, stream: Stream) -> None:
        unit = plays[stream.key][0]
        busy[worker.handle.play.remote(stream.key, unit[0], unit[1])] = (worker, stream, unit)

    def error(unit: Unit, text: str, episode: int) -> Outcome:
        return Outcome(error_record(unit[0], unit[2], run, protocol, text, episode))

    with progress_bar(run.progress, console) as progress:
        bar = progress.add_task("episodes", total=len(order), completed=sum(u in committed for u in order))
        while queue or busy:
            while idle and queue:
                worker, stream = idle.pop(0), queue.pop(0)
                open_on(worker, stream)
                submit(worker, stream)
            if not busy:
                break
            [ref], _ = ray.wait(list(busy), num_returns=1)
            worker, stream, unit = busy.pop(ref)
            task, episode, agent = unit
            try:
                kind, text, vectors = ray.get(ref)
            except died as e:  # the worker's process is gone: a fresh one replays the stream from what is committed
                failures[unit] = failures.get(unit, 0) + 1
                say(console, f"{task} ep {episode} {agent}: {type(e).__name__}", "worker lost", "yellow")
                workers.remove(worker)
                if actors.keeper is not None:  # the copies it held go back, to be reset before their next episode
                    ray.get(actors.keeper.drop.remote(worker.name))
                workers.append(replacement := new_worker())
                idle.append(replacement)
                plays[stream.key] = [u for u in stream.units(run.episodes) if u not in committed]
                arrived.drop(plays[stream.key])
                if failures[unit] > run.ray.retries:
                    arrived.put(unit, error(unit, f"its worker was lost {failures[unit]} times", episode))
                    plays[stream.key].remove(unit)
                if plays[stream.key]:
                    queue.insert(0, stream)
                continue
            if kind == TASK:  # the task cannot run (a bad game file): one error row, on with the other tasks
                say(console, f"{task}: {text}", "error", "red")
                lost = [u for u in plays[stream.key] if u[0] == task]
                recorded = (task, -1, agent) in committed  # a resumed run has its error row already
                for u in lost:
                    arrived.put(u, error(u, text, -1) if u == lost[0] and not recorded else Outcome())
                plays[stream.key] = [u for u in plays[stream.key] if u[0] != task]
            elif kind == INFRA:
                failures[unit] = failures.get(unit, 0) + 1
                say(console, f"{task} ep {episode} {agent}: {text}", "infrastructure", "yellow")
                if failures[unit] > run.infra_retries:
                    arrived.put(unit, error(unit, text, episode))
                    plays[stream.key].pop(0)
            else:
                arrived.put(unit, Outcome(shipped=Shipped.unpack(text, vectors)))
                plays[stream.key].pop(0)
            for done, outcome in arrived.release():
                record = outcome.commit(writer, ours[done])
                if ours[done].shared and outcome.shipped is not None and actors.service is not None:
                    learned = writer.as_committed(ours[done].key, outcome.shipped.learned)
                    publish = actors.service.publish.remote(done[2], ours[done].key, learned.header(), learned.vectors)
                    published[done[2]] = ray.get(publish)
                committed.add(done)
                progress.advance(bar)
                if record is None:
                    continue
                history.append(record)
                if record.status == "ok":
                    scores.setdefault(record.agent, []).append(record.score)
                steps_played += record.steps
                progress.update(bar, description=describe(record.task, record.episode, steps_played, scores))
            if plays[stream.key]:
                submit(worker, stream)
            else:
                worker.handle.close_stream.remote(stream.key)
                idle.append(worker)
    for worker in workers:
        ray.get(worker.handle.close.remote())


def token_available() -> bool:
    """A Ray auth token where Ray looks for one (`ray start` writes ~/.ray/auth_token)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise UserError(
            f"run.ray.address={address}: no Ray head answers there ({e}); start one with `ray start --head`, or set "
            "run.ray.address=null for a Ray instance of this run's own"
        ) from None


@dataclass(frozen=True)
class Actors:
    """Handles (typed by Ray as Any) of the actors every worker of the run shares, where the run has them."""

    keeper: Any
    """A `LeaseKeeper`: the env's copies (WebArena instances)."""
    service: Any
    """A `MemoryService` (`run.ray.shared_memory=service`)."""


@dataclass
class Playing:
    """A stream a worker has open."""

    agent: Agent
    memories: StreamMemories
    name: str
    cursor: int | None
    """Where a shared stream is in the memory service's log (None: the stream reads no service)."""
    known: dict[int, int] = field(default_factory=dict)
    """Entries the service brought into the replica, not yet shipped: replica id → run id."""


@dataclass(frozen=True)
class Worker:
    handle: Any
    """A Ray actor handle (Ray's API is dynamic) of a `StreamWorker`."""
    name: str
    """The holder name it leases the env's copies under."""
