"""The paper's LLM step evaluator: after an episode ends, an LLM reads the whole trajectory and its outcome and scores
every step (Jericho −10..10, web −3..3); memory stores those scores as the step rewards.

Facts of the reference code this follows (docs/method.md): one call per finished episode; the outcome
(success or failure, the final score) heads the prompt; each step shows its state, action and env reward; a failed
episode's last env reward is set to −10; steps the model leaves out score 0; when the model cannot be parsed the env
rewards stand in. In its Jericho code a stored reward is the LLM's score, or the env reward where the LLM gave 0
(`env_when_zero`); its web code stores the LLM's scores only. Its return quirk (a zero future reward counts as the
step's own reward) is `zero_fill`, off by default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jitrl_bench.checks import BadValue, Checked, above, at_least, finite
from jitrl_bench.contract import Generator, Message, Policy, PolicyConfig, Prompt
from jitrl_bench.errors import UserError
from jitrl_bench.records import sha1
from jitrl_bench.replies import json_object
from jitrl_bench.rewards.base import FinishedEpisode, Rewards

SYSTEM = (
    "You evaluate an agent's finished episode step by step. For every step, judge the action by its full chain of "
    "consequences toward the goal and the final outcome, not only by its immediate reward, and give it a score from "
    "{low:g} (harmful) to {high:g} (decisive progress); 0 is neutral. Reply with JSON only."
)
CHARS_PER_TOKEN = 3  # a conservative estimate, to fit long episodes into the evaluator's window


@dataclass
class LLMRewardsConfig(Checked):
    """An LLM scores each step of the finished episode (configs/reward/llm.yaml)."""

    name: str = "llm"
    scale: float = 10.0
    """Scores lie in [−scale, scale]: the reference uses 10 on Jericho and 3 on the web."""
    failure_last: float = -10.0
    """The env reward given to the last step of an episode that was not won (the reference's failure rule)."""
    env_when_zero: bool = True
    """Store the env reward where the LLM scored 0 (the reference's Jericho code); false: the LLM's scores only
    (its web code)."""
    zero_fill: bool = False
    """The reference's return quirk: a zero future reward counts as the step's own reward when G is computed."""
    max_new_tokens: int = 1024
    """Reply budget: about 4 tokens per step score."""
    policy: Any = None
    """The evaluating policy, a policy config (e.g. {_target_: ...OpenAIPolicyConfig, base_url: ..., model: ...}),
    built and checked with the rest of the config (`config.instantiate_group` builds a nested `_target_`); null: the
    acting policy."""

    def check(self) -> None:
        above("scale", self.scale, 0.0)
        finite("failure_last", self.failure_last)
        at_least("max_new_tokens", self.max_new_tokens, 16)
        if self.policy is not None and not dataclasses.is_dataclass(self.policy):  # a mapping without a _target_
            raise BadValue("policy", self.policy, "a policy config with a _target_, or null for the acting policy")

    def evaluating(self) -> PolicyConfig | None:
        """The evaluator's own policy config (None: the acting policy evaluates)."""
        config: PolicyConfig | None = self.policy
        return config

    def make(self, acting: Policy) -> LLMRewards:
        own = self.evaluating()
        policy = acting if own is None else own.make()
        generator = policy.generator()
        if generator is None:
            raise UserError(f"reward=llm needs a policy that writes text; {policy.name} does not: set reward.policy")
        return LLMRewards(self, generator, policy.window.max_prompt_tokens, policy.name)


def schema(steps: int, scale: float) -> dict[str, Any]:
    """Integer scores as an enum when the scale is whole: structured-output engines keep enums, not all keep ranges."""
    whole = float(scale).is_integer() and scale <= 100
    score: dict[str, Any] = (
        {"enum": list(range(-int(scale), int(scale) + 1))}
        if whole
        else {"type": "number", "minimum": -scale, "maximum": scale}
    )
    return {
        "type": "object",
        "properties": {"scores": {"type": "array", "items": score, "minItems": steps, "maxItems": steps}},
        "required": ["scores"],
    }


class LLMRewards:
    def __init__(self, cfg: LLMRewardsConfig, generator: Generator, window: int, model: str = "") -> None:
        self.cfg = cfg
        self.model = model
        self.generator = generator
        self.window = window

    def rewards(self, episode: FinishedEpisode) -> Rewards:
        cfg = self.cfg
        env = [step.env_reward for step in episode.steps]
        if env and not episode.won:
            env[-1] = cfg.failure_last
        if not episode.steps:
            return Rewards([])
        prompt = self.prompt(episode)
        shape = schema(len(episode.steps), cfg.scale)
        reply = self.generator.generate(prompt, cfg.max_new_tokens, shape)
        usage, replies = reply.usage, [reply.text]
        scores, problem = parse_scores(reply.text, len(episode.steps), cfg.scale)
        if scores is None:  # one repair attempt, naming what was wrong
            repair = Prompt((*prompt.messages, *_repair_turn(reply.text, problem, len(episode.steps))))
            reply = self.generator.generate(repair, cfg.max_new_tokens, shape)
            usage, replies = usage + reply.usage, [*replies, reply.text]
            scores, problem = parse_scores(reply.text, len(episode.steps), cfg.scale)
        record: dict[str, Any] = {
            "prompt_sha1": sha1(prompt.text()),
            "replies": replies,
            "env_rewards": env,
            "scale": cfg.scale,
        }
        if scores is None:  # the env's rewards stand in (failure rule applied), as in the reference
            fallback = f"evaluator reply unusable after one repair: {problem}"
            return Rewards(env, usage, {**record, "fallback": fallback, "rewards": env}, fallback, self.model)
        values = [s if s != 0 or not cfg.env_when_zero else e for s, e in zip(scores, env, strict=True)]
        return Rewards(values, usage, {**record, "scores": scores, "rewards": values}, model=self.model)

    def prompt(self, episode: FinishedEpisode) -> Prompt:
        """The outcome first, then every step (its state cut to fit the evaluator's window), then the last state."""
        outcome = "SUCCESS" if episode.won else "FAILURE"
        score = f"{episode.score:g}" + (f" of {episode.max_score:g}" if episode.max_score > 0 else "")
        head = [f"Outcome: {outcome}, final score {score}."]
        if episode.goal:
            head.append(f"Goal: {episode.goal}")
        room = max(self.window - 200 - 12 * len(episode.steps), 400) * CHARS_PER_TOKEN
        per_step = max(60, min(600, room // (len(episode.steps) + 1)))
        lines = []
        for t, step in enumerate(episode.steps):
            lines.append(f"Step {t + 1}\nState: {_clip(step.observation, per_step)}")
            lines.append(f"Action: {step.action}\nReward: {step.env_reward:g}")
        lines.append(f"Final state: {_clip(episode.final_observation, per_step)}")
        ask = (
            f'Score all {len(episode.steps)} steps, in order: {{"scores": [one number per step, from '
            f"{-self.cfg.scale:g} to {self.cfg.scale:g}]}}"
        )
        system = SYSTEM.format(low=-self.cfg.scale, high=self.cfg.scale)
        return Prompt.chat(system, "\n".join([*head, "", *lines, "", ask]))


def parse_scores(text: str, steps: int, scale: float) -> tuple[list[float] | None, str]:
    """The step scores in a reply: {"scores": [...]} anywhere in the text, clipped to ±scale; steps left out score 0
    (as the reference fills them). (None, why) when there is no usable JSON list."""
    data, problem = json_object(text)
    if data is None:
        return None, problem
    values = data.get("scores")
    if not isinstance(values, list) or not values:
        return None, 'no "scores" list'
    scores: list[float] = []
    for value in values[:steps]:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return None, f"a score is not a number: {value!r}"
        scores.append(min(max(float(value), -scale), scale))
    return scores + [0.0] * (steps - len(scores)), ""


def _repair_turn(reply: str, problem: str, steps: int) -> Sequence[Message]:
    return (
        Message("assistant", reply[:2000]),
        Message("user", f'That reply is unusable ({problem}). Reply with JSON only: {{"scores": [{steps} numbers]}}'),
    )


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
