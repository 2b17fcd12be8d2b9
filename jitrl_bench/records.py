"""Typed records written to the run directory as JSON lines (never pickles): decisions, steps, episodes, and what
their LLM calls cost. The bottom of the package: it imports nothing of it, and `contract` names these records."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1
"""The version of the run files' schema (docs/run-files.md), written to config.yaml as `_meta.schema_version`. A
change that renames or retypes a field raises it; a new field with a default does not (readers ignore what they do not
know and default what is missing). Runs written before the field existed are version 1."""


@dataclass(frozen=True)
class Usage:
    """What LLM calls cost: counted per call by the policy that made it, summed per decision and per episode."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class PromptCut:
    """What a layout left out to fit the window (recorded in the decision trace)."""

    part: str
    """Which part was cut, e.g. "page" (the accessibility tree) or "observation"."""
    tokens_before: int
    tokens_after: int
    lines_before: int = 0
    lines_after: int = 0


@dataclass
class Decision:
    """Everything behind one action: z (log π_θ), Â, the neighbours used, z' = z + Â/β, π*, and the choice."""

    action: str
    index: int
    candidates: list[str]
    z: list[float | None]
    """log π_θ per candidate; None for a candidate the policy did not score (the paper's memory actions)."""
    advantage: list[float] = field(default_factory=list)
    z_prime: list[float] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    """[{id, similarity, return, action}] of the retrieved entries."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Estimator internals worth keeping (V̂, λ, w, memory actions added)."""
    bias_applied: str = "client"
    """Where Â/β was added to z and the action drawn: "engine" (inside the LLM server: vLLM's logits processor or
    the server's logit_bias) or "client" (here, after `score`)."""
    usage: Usage = field(default_factory=Usage)
    """The LLM calls and tokens this decision took (all purposes)."""
    usage_by_purpose: dict[str, Usage] = field(default_factory=dict)
    """The same, by purpose: acting, proposing, summarizing."""
    prompt_cuts: list[PromptCut] = field(default_factory=list)
    """What the env's prompt layout left out to fit the policy's window (empty: nothing)."""
    prompt_sha1: str = ""
    """A digest of the prompt the policy read: equal across agents at the same step (same env state and history)."""
    proposal_fallback: str = ""
    """Non-empty when the agent asked the LLM for proposals and could not use them: why (the env's candidates were
    scored instead)."""


@dataclass
class StepRecord:
    step: int
    observation_sha1: str
    """A digest of the observation the action led to."""
    action: str
    reward: float
    score: float
    decision: Decision
    observation: str = ""
    """The observation the agent acted on (what the report's decision viewer shows)."""
    candidates_cut: int = 0
    """Candidates of the step's page beyond `env.max_candidates`, not offered to the agent (the env counted them)."""
    blocked_requests: list[str] = field(default_factory=list)
    """Requests the action led to that the origin guard aborted (the guard's own list)."""


@dataclass
class EpisodeRecord:
    """One finished episode: a row of episodes.jsonl. Carries its protocol (model, env, budget, seed, agent)."""

    task: str
    episode: int
    agent: str
    policy: str
    env: str
    seed: int
    max_steps: int
    score: float
    max_score: float
    norm_score: float
    success: bool
    steps: int
    ret: float
    wall_s: float
    tokens: int
    """prompt_tokens + completion_tokens of every LLM call the episode made (acting and learning)."""
    episode_uid: str
    run_id: str
    config_hash: str
    status: str = "ok"
    """`ok`; `error` (the task could not run: bad game file, crash; or its infrastructure failed); `ungraded` (played,
    but the grader could not score it, e.g. no LLM judge: `regrade` can later). Only `ok` rows enter success rates."""
    error: str = ""
    artifacts: dict[str, Any] = field(default_factory=dict)
    """What the env graded the episode from (web: the answer, the HAR, the site URLs), for `jitrl-bench regrade`."""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls_by_purpose: dict[str, int] = field(default_factory=dict)
    """LLM calls by purpose: acting, proposing, summarizing, evaluating."""
    tokens_by_purpose: dict[str, int] = field(default_factory=dict)
    prompt_tokens_by_purpose: dict[str, int] = field(default_factory=dict)
    completion_tokens_by_purpose: dict[str, int] = field(default_factory=dict)
    model_by_purpose: dict[str, str] = field(default_factory=dict)
    """Which model each purpose's calls went to (the evaluator may be another model): prices apply per model."""
    embeddings: int = 0
    """Texts embedded for retrieval (states, notes) during the episode."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the episode's time went: llm (model calls), embedding, retrieval, env (reset, steps, grading)."""
    hardware: str = ""
    """Where the policy's model ran: gpu, cpu, api (priced by tokens) or none."""
    compute_s: float = 0.0
    """Seconds inside the agent and the reward source (LLM calls, embeddings, retrieval, learning); the env's own time
    is the rest of wall_s. On a GPU-served local model this is the GPU time the episode held."""
    proposal_fallbacks: int = 0
    """Decisions whose LLM proposal was unusable (the env's candidates were scored instead)."""
    reward_fallback: str = ""
    """Non-empty when the reward source could not score the episode and the env's rewards stood in: why."""

    def to_json(self) -> str:
        row = asdict(self)
        row["return"] = row.pop("ret")
        return json.dumps(row, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> EpisodeRecord:
        """One row of episodes.jsonl; ValueError naming what is wrong when the line is not one."""
        row = json.loads(line)
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        if "return" in row:
            row["ret"] = row.pop("return")
        known = {f.name for f in fields(cls)}
        missing = [name for name in REQUIRED if name not in row]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return cls(**{k: v for k, v in row.items() if k in known})


REQUIRED = ("task", "episode", "agent", "policy", "env", "seed", "max_steps", "score", "max_score", "norm_score",
            "success", "steps", "ret", "wall_s", "tokens", "episode_uid", "run_id", "config_hash")  # fmt: skip


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]
