"""The local scheduler: every (task, episode, agent) of the run on threads of this process, up to `run.concurrency`
episodes at a time, each finished episode committed by this thread alone (memory → steps → episodes.jsonl)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jitrl_bench.contract import Agent, EpisodeEnv
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.rewards.base import EnvRewards, RewardSource
from jitrl_bench.run.episode import Played, Provenance, Task, error_record, play_episode
from jitrl_bench.run.rundir import RunDirectory
from jitrl_bench.run.settings import RunConfig
from jitrl_bench.run.streams import AgentShape, Unit, plan
from jitrl_bench.terminal import say


class EnvPool:
    """Environments of one task, one per episode in flight (adapters are not thread-safe)."""

    def __init__(self, task: str, make_env: Callable[[str], EpisodeEnv]) -> None:
        self.task = task
        self._make = make_env
        self._idle: list[EpisodeEnv] = [make_env(task)]  # the first one surfaces a bad task at once
        self._all = list(self._idle)
        self._lock = threading.Lock()

    def acquire(self) -> EpisodeEnv:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        env = self._make(self.task)
        with self._lock:
            self._all.append(env)
        return env

    def release(self, env: EpisodeEnv) -> None:
        with self._lock:
            self._idle.append(env)

    def close(self) -> None:
        for env in self._all:
            env.close()


def run_all(
    run_dir: RunDirectory,
    tasks: list[str],
    make_env: Callable[[str], EpisodeEnv],
    agents: list[Agent],
    run: RunConfig,
    protocol: Provenance,
    console: Console,
    reward_source: RewardSource | None = None,
) -> None:
    """Play everything not yet in episodes.jsonl, up to `run.concurrency` episodes at a time.

    Order is task, then episode, then agent, so a partial run still compares agents on the same episodes. A learning
    agent's episode e starts only after its episode e-1 is in memory, so concurrency never changes what it sees: the
    results equal a sequential run's (order aside). Episodes are committed by this thread alone."""
    reward_source = reward_source or EnvRewards()
    done = {(r.task, r.agent, r.episode) for r in run_dir.finished()}
    by_name = {a.name: a for a in agents}
    ours = shard_units(run, tasks, agents)
    pending = [
        (task, episode, agent.name)
        for task in tasks
        for episode in range(run.episodes)
        for agent in agents
        if (task, agent.name, episode) not in done and (ours is None or (task, episode, agent.name) in ours)
    ]
    finished = set(done)
    scores: dict[str, list[float]] = {a.name: [] for a in agents}
    pools: dict[str, EnvPool | None] = {}
    stop = threading.Event()
    steps_played = 0
    failures: dict[tuple[str, int, str], int] = {}

    def ready(task: str, episode: int, agent: str) -> bool:
        return not by_name[agent].learns or episode == 0 or (task, agent, episode - 1) in finished

    def pool_for(task: str) -> EnvPool | None:
        if task not in pools:
            try:
                pools[task] = EnvPool(task, make_env)
            except UserError as e:  # a bad game file: say so, record it, and go on with the other tasks
                say(console, f"{task}: {e}", "error", "red")
                for a in agents:
                    if (task, a.name, -1) not in done and (ours is None or (task, 0, a.name) in ours):
                        run_dir.commit(error_record(task, a.name, run, protocol, str(e)))
                pools[task] = None
        return pools[task]

    def work(task: str, episode: int, agent: str, pool: EnvPool) -> Played:
        env = pool.acquire()
        try:
            return play_episode(by_name[agent], Task(task, env), episode, run, protocol, reward_source, stop)
        finally:
            pool.release(env)

    with progress_bar(run.progress, console) as progress, ThreadPoolExecutor(max(run.concurrency, 1)) as executor:
        total = len(tasks) * len(agents) * run.episodes if ours is None else len(ours)
        bar = progress.add_task("episodes", total=total, completed=total - len(pending))
        in_flight: dict[Future[Played], tuple[str, int, str]] = {}
        try:
            while pending or in_flight:
                for unit in list(pending):
                    if len(in_flight) >= max(run.concurrency, 1):
                        break
                    pool = pool_for(unit[0])
                    if pool is None:  # the task cannot run: drop all of its episodes
                        skipped = [u for u in pending if u[0] == unit[0]]
                        pending = [u for u in pending if u[0] != unit[0]]
                        progress.advance(bar, len(skipped))
                        continue
                    if unit in pending and ready(*unit):
                        pending.remove(unit)
                        in_flight[executor.submit(work, *unit, pool)] = unit
                if not in_flight:
                    if pending:  # nothing runnable and nothing running: a scheduling bug, never spin
                        raise RuntimeError(f"runner stalled with {len(pending)} episodes pending")
                    break
                completed, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in completed:
                    task, episode, agent = in_flight.pop(future)
                    try:
                        played = future.result()
                    except InfraError as e:
                        failures[(task, episode, agent)] = failures.get((task, episode, agent), 0) + 1
                        say(console, f"{task} ep {episode} {agent}: {e}", "infrastructure", "yellow")
                        if failures[(task, episode, agent)] <= run.infra_retries:
                            pending.insert(0, (task, episode, agent))
                            continue
                        record = error_record(task, agent, run, protocol, str(e), episode)
                    else:
                        record = played.record
                        run_dir.write_rewards(record, played.rewards.record)
                        run_dir.write_steps(record, played.steps)
                    run_dir.commit(record)
                    finished.add((task, agent, episode))
                    if record.status == "ok":
                        scores[agent].append(record.score)
                    steps_played += record.steps
                    progress.advance(bar)
                    progress.update(bar, description=describe(task, episode, steps_played, scores))
        except BaseException:
            stop.set()  # Ctrl-C or a crash: episodes in flight stop at their next step and are not committed
            # Their envs are closed only once no thread is inside one: closing a game's C state (Jericho, TextWorld)
            # under a step still running in it would crash the process instead of stopping it.
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            for pool in pools.values():
                if pool is not None:
                    pool.close()


def shard_units(run: RunConfig, tasks: list[str], agents: list[Agent]) -> set[Unit] | None:
    """The episodes of this shard's streams (`run.shard`), or None when the run is not sharded."""
    shard = run.shard_of
    if shard is None:
        return None
    streams = shard.take(plan(tasks, [AgentShape(a.name, a.within_task) for a in agents]))
    return {unit for stream in streams for unit in stream.units(run.episodes)}


def describe(task: str, episode: int, steps: int, scores: dict[str, list[float]]) -> str:
    means = "  ".join(f"{name} {sum(s) / len(s):.2f}" for name, s in scores.items() if s)
    return f"{task} ep {episode + 1} | {steps} steps | mean score: {means}"


@contextmanager
def progress_bar(enabled: bool, console: Console) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not enabled, transient=False,
    )  # fmt: skip
    with progress:
        yield progress
