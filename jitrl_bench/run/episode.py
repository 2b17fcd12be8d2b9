"""One episode, top to bottom: reset(seed), act until the game ends or the budget runs out, the episode's rewards, the
agent learns from it. What is committed, and in which order, is `rundir.py`'s; who plays which episode when is the
scheduler's (`local.py`: threads; `cluster/scheduler.py`: a Ray cluster). Both call `play_episode`.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

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
from jitrl_bench.memory.embed import embedded_in_this_thread
from jitrl_bench.records import EpisodeRecord, StepRecord, sha1
from jitrl_bench.rewards.base import Rewards, RewardSource
from jitrl_bench.run.settings import RunConfig
from jitrl_bench.timing import COMPUTE, ENV, seconds_in_this_thread, since, spent


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
class Provenance:
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
    protocol: Provenance,
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
        before, cut = view.observation, view.candidates_cut
        with spent(ENV):
            observation, reward, terminated, _, _ = task.env.step(decision.action)
            view = checked(task.env.view())
        traces.append(StepTrace(before, decision.action, float(reward)))
        steps.append(
            StepRecord(
                t, sha1(observation), decision.action, float(reward), view.score, decision, before, cut, [*view.blocked]
            )
        )
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
    task: str, agent: str, run: RunConfig, protocol: Provenance, error: str, episode: int = -1
) -> EpisodeRecord:
    """A task that could not run at all (episode -1) or an episode lost to infrastructure failures."""
    return EpisodeRecord(
        task=task, episode=episode, agent=agent, policy=protocol.policy, env=protocol.env, seed=run.seed,
        max_steps=run.max_steps, score=0.0, max_score=0.0, norm_score=0.0, success=False, steps=0, ret=0.0,
        wall_s=0.0, tokens=0, episode_uid="", run_id=protocol.run_id, config_hash=protocol.config_hash,
        status="error", error=error,
    )  # fmt: skip


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
