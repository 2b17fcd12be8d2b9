"""The episode runner: plays every (task, episode, agent), streams each finished episode to the run directory and to
the agent's memory, and resumes after the last finished episode. The commit order is in `rundir.py`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jitrl_bench.checks import Checked, at_least, name
from jitrl_bench.contract import (
    ACTING,
    EVALUATING,
    LEARNING,
    Agent,
    EpisodeEnv,
    FinishedEpisode,
    Ledger,
    StepTrace,
    StepView,
    Turn,
)  # fmt: skip
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.jitrl.embed import embedded_in_this_thread
from jitrl_bench.records import EpisodeRecord, StepRecord, sha1
from jitrl_bench.rewards.base import EnvRewards, Rewards, RewardSource
from jitrl_bench.rundir import RunDirectory
from jitrl_bench.timing import COMPUTE, ENV, seconds_in_this_thread, since, spent


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

    def check(self) -> None:
        at_least("episodes", self.episodes, 1)
        at_least("max_steps", self.max_steps, 1)
        at_least("seed", self.seed, 0)
        at_least("temperature", self.temperature, 0.0, "0 acts by argmax")
        for baseline in self.baselines:
            name("baselines", baseline)
        at_least("infra_retries", self.infra_retries, 0)
        at_least("concurrency", self.concurrency, 1)


@dataclass
class Task:
    """What the runner needs to play one task with one agent."""

    name: str
    env: EpisodeEnv


@dataclass
class Played:
    """A finished episode, ready to commit: its row, its steps, and what its reward source kept."""

    record: EpisodeRecord
    steps: list[StepRecord]
    rewards: Rewards


@dataclass
class Protocol:
    """What every episode row says about how it was produced."""

    env: str
    policy: str
    run_id: str
    config_hash: str
    hardware: str = ""
    """Where the policy's model ran (gpu, cpu, api, none): how cost accounting prices the episode."""


class Interrupted(Exception):
    """An episode abandoned because the run is stopping; it is never committed."""


class ContractError(RuntimeError):
    """An env adapter produced a step that breaks the contract (an adapter bug, not the user's input)."""


def checked(view: StepView) -> StepView:
    problems = view.problems()
    if problems:
        raise ContractError(f"task {view.task!r}: the env's step view breaks the contract: {'; '.join(problems)}")
    return view


def play_episode(
    agent: Agent,
    task: Task,
    episode: int,
    run: RunConfig,
    protocol: Protocol,
    reward_source: RewardSource,
    stop: threading.Event | None = None,
) -> Played:
    """One episode: reset(seed), act until the game ends or the budget runs out, then (the episode over) its rewards,
    and hand them to the agent."""
    uid = uuid.uuid4().hex
    seed = run.seed + episode
    ctx = agent.start(task.name, episode, uid, run.seed)
    start, clock = time.perf_counter(), seconds_in_this_thread()
    with spent(ENV):
        task.env.reset(seed=seed)
        view = checked(task.env.view())
    goal = view.goal
    steps: list[StepRecord] = []
    traces: list[StepTrace] = []
    ledger = Ledger()
    embedded = embedded_in_this_thread()
    for t in range(run.max_steps):
        if stop is not None and stop.is_set():
            raise Interrupted(f"{task.name} episode {episode} ({agent.name})")
        with spent(COMPUTE):
            decision = agent.act(ctx, view)
        ledger.merge(decision.usage_by_purpose or {ACTING: decision.usage})
        chosen = view.candidates[decision.index] if decision.index < len(view.candidates) else None
        label = chosen.label if chosen is not None and chosen.action == decision.action else decision.action
        before = view.observation
        with spent(ENV):
            observation, reward, terminated, _, _ = task.env.step(decision.action)
            view = checked(task.env.view())
        traces.append(StepTrace(before, decision.action, float(reward)))
        steps.append(StepRecord(t, sha1(observation), decision.action, float(reward), view.score, decision, before))
        ctx.history.append(Turn(decision.action, label, observation))
        if terminated:
            break
    else:
        if steps:  # out of steps: an env that grades after the episode grades it now
            score_before = view.score
            with spent(ENV):
                view = checked(task.env.end_episode())
            last = traces[-1]
            traces[-1] = StepTrace(last.observation, last.action, last.env_reward + view.score - score_before)
            steps[-1].score = view.score
    finished = FinishedEpisode(
        task.name, goal, tuple(traces), view.observation, view.won, view.score, view.max_score
    )  # fmt: skip
    with spent(COMPUTE):
        rewards = reward_source.rewards(finished)  # the episode is over: an evaluator reads it whole
        ledger.charge(EVALUATING, rewards.usage)
        ledger.charge(LEARNING, agent.finish(ctx, finished, rewards.values))
    seconds = since(clock)
    by_purpose = sorted(ledger.by_purpose.items())
    for step, r in zip(steps, rewards.values, strict=True):
        step.reward = r
    usage = ledger.total
    record = EpisodeRecord(
        task=task.name,
        episode=episode,
        agent=agent.name,
        policy=protocol.policy,
        env=protocol.env,
        seed=seed,
        max_steps=run.max_steps,
        score=view.score,
        max_score=view.max_score,
        norm_score=view.score / view.max_score if view.max_score > 0 else 0.0,
        success=view.won,
        steps=len(steps),
        ret=sum(rewards.values),
        wall_s=round(time.perf_counter() - start, 3),
        tokens=usage.tokens,
        episode_uid=uid,
        run_id=protocol.run_id,
        config_hash=protocol.config_hash,
        artifacts=dict(view.artifacts),
        status="ungraded" if view.ungraded else "ok",
        error=view.ungraded,
        llm_calls=usage.calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        calls_by_purpose={purpose: u.calls for purpose, u in by_purpose},
        tokens_by_purpose={purpose: u.tokens for purpose, u in by_purpose},
        prompt_tokens_by_purpose={purpose: u.prompt_tokens for purpose, u in by_purpose},
        completion_tokens_by_purpose={purpose: u.completion_tokens for purpose, u in by_purpose},
        model_by_purpose={
            p: rewards.model if p == EVALUATING and rewards.model else protocol.policy for p, _ in by_purpose
        },
        embeddings=embedded_in_this_thread() - embedded,
        compute_s=seconds.pop(COMPUTE, 0.0),
        seconds=seconds,
        hardware=protocol.hardware,
        proposal_fallbacks=sum(bool(step.decision.proposal_fallback) for step in steps),
        reward_fallback=rewards.fallback,
    )
    return Played(record, steps, rewards)


def error_record(
    task: str, agent: str, run: RunConfig, protocol: Protocol, error: str, episode: int = -1
) -> EpisodeRecord:
    """A task that could not run at all (episode -1) or an episode lost to infrastructure failures."""
    return EpisodeRecord(
        task=task, episode=episode, agent=agent, policy=protocol.policy, env=protocol.env, seed=run.seed,
        max_steps=run.max_steps, score=0.0, max_score=0.0, norm_score=0.0, success=False, steps=0, ret=0.0,
        wall_s=0.0, tokens=0, episode_uid="", run_id=protocol.run_id, config_hash=protocol.config_hash,
        status="error", error=error,
    )  # fmt: skip


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
    protocol: Protocol,
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
    pending = [
        (task, episode, agent.name)
        for task in tasks
        for episode in range(run.episodes)
        for agent in agents
        if (task, agent.name, episode) not in done
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
                console.print(f"[red]error[/red] {task}: {e}")
                for a in agents:
                    if (task, a.name, -1) not in done:
                        run_dir.commit(error_record(task, a.name, run, protocol, str(e)))
                pools[task] = None
        return pools[task]

    def work(task: str, episode: int, agent: str, pool: EnvPool) -> Played:
        env = pool.acquire()
        try:
            return play_episode(by_name[agent], Task(task, env), episode, run, protocol, reward_source, stop)
        finally:
            pool.release(env)

    with _progress(run.progress, console) as progress, ThreadPoolExecutor(max(run.concurrency, 1)) as executor:
        total = len(tasks) * len(agents) * run.episodes
        bar = progress.add_task("episodes", total=total, completed=sum(1 for d in done if d[2] >= 0))
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
                        console.print(f"[yellow]infrastructure[/yellow] {task} ep {episode} {agent}: {e}")
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
                    progress.update(bar, description=_describe(task, episode, steps_played, scores))
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


def _describe(task: str, episode: int, steps: int, scores: dict[str, list[float]]) -> str:
    means = "  ".join(f"{name} {sum(s) / len(s):.2f}" for name, s in scores.items() if s)
    return f"{task} ep {episode + 1} | {steps} steps | mean score: {means}"


@contextmanager
def _progress(enabled: bool, console: Console) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not enabled, transient=False,
    )  # fmt: skip
    with progress:
        yield progress


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
