"""What an env shows the rest (StepView and its parts) and what an env config must provide."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jitrl_bench.contract.needs import GameFiles, Requirement
from jitrl_bench.contract.prompts import ContextWindow, RenderedPrompt

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


@dataclass(frozen=True)
class JudgeChoice:
    """The LLM judge the person re-grading names (command line, environment), never the run's own endpoint or key
    variable: the run is data, maybe someone else's."""

    base_url: str | None = None
    """An OpenAI-compatible endpoint; None: $OPENAI_BASE_URL, else OpenAI's API when the key variable is set."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the judge's key (read from this process's environment only)."""
    model: str | None = None
    """None: the model the run's config recorded for its judge, else the grader's default."""


class Regrader(Protocol):
    def regrade(self, artifacts: Mapping[str, Any]) -> float | None:
        """The grade again, from an episode's stored artifacts; None when grading needs the live page. Raises
        `errors.Ungradable` when the grade cannot be computed now."""
        ...

    def use_judge(self, judge: JudgeChoice) -> None:
        """Grade with this judge wherever a grade asks an LLM (a no-op for graders that never do); raises BadValue
        for a judge that cannot be used."""
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

    def requirements(self) -> list[Requirement]:
        """What this env needs on this machine (packages, runtimes, game files, sites), each checked now, cheaply
        and without loading the env: `jitrl-bench doctor` shows them."""
        ...

    def game_files(self) -> GameFiles | None:
        """Its game files that no package ships (`jitrl-bench games`), or None."""
        ...


class PromptLayout(Protocol):
    """An env family's prompt: its system text and layout. The same view, history and window always give the same
    prompt, so every agent of a run reads the identical prompt at a given step."""

    def render(self, view: StepView, history: Sequence[Turn], window: ContextWindow) -> RenderedPrompt: ...
