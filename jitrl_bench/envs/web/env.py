"""One Gymnasium env for every web benchmark: the benchmarks only supply a small `WebTask`.

Reset, step, action parsing, candidates and the info dict of the contract (`envs/base.py`) live here once, so MiniWoB
and WebArena report a step the same way. An action is text; it is parsed by `contract/web_actions.py` (a rejected one
runs nothing and comes back as an error in the observation), then run in the browser. All browser work happens on the
browser thread (`browser.on_browser_thread`), so an env may be reset, stepped and closed from any thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import playwright.sync_api as pw

from jitrl_bench.checks import Checked, at_least, between
from jitrl_bench.contract import Candidate, StepView
from jitrl_bench.contract.web_actions import Action, ActionError, parse_action
from jitrl_bench.envs.base import text_space
from jitrl_bench.envs.web.browser import close_quietly, close_soon, interrupt_soon, on_browser_thread, shared_browser
from jitrl_bench.envs.web.execute import run_action
from jitrl_bench.envs.web.origin_guard import RequestGuard, SitePolicy
from jitrl_bench.envs.web.page import SELECT_ROLES, TEXT_ROLES, Element, PageView, observe
from jitrl_bench.envs.web.prompt import WebPrompt, normalize_url
from jitrl_bench.errors import InfraError
from jitrl_bench.text import clean_text, valid_text

OBS_CHARS = 100_000
ACTION_CHARS = 4000
FIELD_CHARS = 1000
MAX_FILL_VALUES = 8  # fill candidates per text box: quoted strings of the goal, else its first words

DEFAULT_STEP_TIMEOUT_S = 120.0
DEFAULT_MAX_CANDIDATES = 3000

T = TypeVar("T")
_QUOTED = re.compile(r"\"([^\"]{1,200})\"|'([^']{1,200})'|“([^”]{1,200})”")
_WORD = re.compile(r"[A-Za-z0-9][\w.@-]*")


@dataclass(frozen=True)
class Grading:
    """What a web episode's grade was computed from (JSON data for `regrade`), and why it is ungraded (if it is)."""

    artifacts: dict[str, Any] = field(default_factory=dict)
    ungraded: str = ""


@dataclass
class WebLimits(Checked):
    """Bounds every web env config has (configs/env/*.yaml of miniwob and webarena*)."""

    step_timeout_s: float = DEFAULT_STEP_TIMEOUT_S
    """Deadline of each browser call of an episode (reset, one step: the action, the page load, the observation).
    Past it the episode's context is closed and the episode fails as infrastructure (retried per
    run.infra_retries): a page in an endless script never holds the one browser thread of the process."""
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    """Candidate actions offered per step at most, the first in page order (plus the task's answers); the number
    cut is in the step's info (`candidates_cut`)."""

    def check(self) -> None:
        between("step_timeout_s", self.step_timeout_s, 1.0, 3600.0, "seconds")
        at_least("max_candidates", self.max_candidates, 1)


class WebTask(Protocol):
    """One benchmark task, seen through the calls the env needs."""

    allowed_origins: tuple[str, ...]
    """`scheme://host[:port]` origins the agent may `goto` (empty: no goto)."""
    instruction: str
    """How this benchmark wants to be answered, appended to the web prompt's system text ("" for none)."""
    extra_candidates: tuple[tuple[str, str], ...]
    """(action, key) pairs offered on every page besides the page's elements, e.g. the final answers."""

    @property
    def sites(self) -> Mapping[str, str]:
        """Site name -> base URL of the sites this episode runs on (URLs are normalised to site names)."""
        ...

    def begin(self, seed: int | None) -> None:
        """Before an episode, off the browser thread: may wait (e.g. for a free copy of the sites)."""
        ...

    def context_options(self, seed: int | None) -> dict[str, Any]:
        """Playwright `new_context` options for an episode (viewport, HAR recording, login state...)."""
        ...

    def site_policy(self) -> SitePolicy:
        """Where this episode's requests may go, and the extra headers for those sites (after `context_options`)."""
        ...

    def setup(self, page: pw.Page, seed: int | None) -> str:
        """Open the task on `page` and return its goal text."""
        ...

    def validate(self, page: pw.Page, action: Action, messages: list[str]) -> tuple[float, bool]:
        """Score (0..1) and whether the episode ended, read after `action` ran; `messages` are the agent's answers."""
        ...

    def finish(self, context: pw.BrowserContext, messages: list[str], score: float) -> float:
        """Called once when the episode ends (after the last observation): the final score.

        A task that grades offline closes `context` here (so Playwright writes the HAR) and grades the recording.
        """
        ...

    def end(self) -> None:
        """After the episode's context is closed (on any path, errors too): release what `begin` took."""
        ...

    def episode_info(self) -> Grading:
        """What this episode's grade is computed from, and why it could not be graded (if so)."""
        ...


def fill_values(goal: str) -> list[str]:
    """Values worth typing: the goal's quoted strings, or (when none) its distinct words, in order."""
    quoted = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(goal)]
    values = quoted or _WORD.findall(goal)
    return list(dict.fromkeys(v.strip() for v in values if v.strip()))[:MAX_FILL_VALUES]


@dataclass(frozen=True)
class Offered:
    """A step's candidates, and how many more the page had past the limit."""

    candidates: list[Candidate]
    cut: int = 0


def candidates_for(view: PageView, goal: str, extra: tuple[tuple[str, str], ...] = ()) -> list[Candidate]:
    """`offer` without a limit."""
    return offer(view, goal, extra).candidates


def offer(view: PageView, goal: str, extra: tuple[tuple[str, str], ...] = (), limit: int | None = None) -> Offered:
    """Click each element; fill each text box with each goal value (and press Enter in it); choose each option of a
    select; plus the task's `extra` (action, key) pairs.

    Sorted by action and deduplicated; keys are `verb role[label]` (+ the value typed or chosen), labels say the
    same in words. Values with characters outside the observation charset are left out (they would be typed
    differently). With `limit`, only the first `limit` element actions in page order are made (the `extra` ones
    always are); the rest are counted in `cut`.
    """
    found: dict[str, Candidate] = {action: Candidate(action, key, key) for action, key in extra}
    values = [v for v in fill_values(goal) if _plain(v)]
    made, cut = 0, 0
    for element in view.elements:
        if limit is not None and made >= limit:
            cut += len(_element_candidates(element, values))
            continue
        for candidate in _element_candidates(element, values):
            if limit is not None and made >= limit:
                cut += 1
            elif candidate.action not in found:
                found[candidate.action] = candidate
                made += 1
    kept = distinct_keys([found[action] for action in sorted(found)]) or [Candidate("noop()", "noop", "wait")]
    return Offered(kept, cut)


def _element_candidates(element: Element, values: list[str]) -> list[Candidate]:
    shown = f"{element.role} {element.label!r}"
    if element.options:
        return [
            Candidate(_call("select_option", element, o), f"select {element.key} {o!r}", f"select {o!r} in {shown}")
            for o in filter(_plain, element.options)
        ]
    if element.role in TEXT_ROLES or element.role == "combobox":  # a combobox without options is a text input
        fills = [
            Candidate(_call("fill", element, v), f"fill {element.key} {v!r}", f"type {v!r} into {shown}")
            for v in values
        ]
        enter = Candidate(_call("press", element, "Enter"), f"press {element.key} 'Enter'", f"press Enter in {shown}")
        return [*fills, enter]
    if element.role not in SELECT_ROLES:
        return [Candidate(_call("click", element), f"click {element.key}", f"click {shown}")]
    return []


def distinct_keys(candidates: list[Candidate]) -> list[Candidate]:
    """Two elements with the same role and label (two unnamed text boxes) would share a key: the second and later
    ones, in page order, get " #2", " #3"... (page order is what stays stable across episodes, ids do not)."""
    by_key: dict[str, list[Candidate]] = {}
    for candidate in sorted(candidates, key=lambda c: _page_order(c.action)):
        by_key.setdefault(candidate.key, []).append(candidate)
    renamed = {
        c.action: Candidate(c.action, f"{c.key} #{n}", f"{c.label} #{n}")
        for same in by_key.values()
        for n, c in enumerate(same, start=1)
        if n > 1
    }
    return [renamed.get(c.action, c) for c in candidates]


def _page_order(action: str) -> tuple[int, str]:
    """BrowserGym ids count up in document order: the number in an action's id, for sorting."""
    found = re.search(r"\('[A-Za-z]*([0-9]+)'", action)
    return (int(found.group(1)) if found else -1, action)


def _plain(value: str) -> bool:
    return clean_text(value, 200) == value


def _call(verb: str, element: Element, *args: str) -> str:
    return f"{verb}({', '.join(repr(a) for a in (element.bid, *args))})"


class WebEnv(gym.Env[str, str]):
    """A web task under the env contract. Any action text is accepted; the candidates only suggest.

    The observation is the page's accessibility tree (elements as `[id] role 'label'`), preceded by the last action's
    error when it failed or was rejected. `reset(seed=s)` is deterministic by `s`; `reset()` reuses the last seed.
    """

    def __init__(self, task: WebTask, task_id: str, limits: WebLimits | None = None) -> None:
        self.task = task
        self.task_id = task_id
        self.limits = limits or WebLimits()
        self.observation_space = text_space(OBS_CHARS)
        self.action_space = text_space(ACTION_CHARS)
        self._seed: int | None = None
        self._context: pw.BrowserContext | None = None
        self._page: pw.Page | None = None
        self._session: pw.CDPSession | None = None  # the page's DevTools session: how a stuck script is stopped
        self._goal = ""
        self._score = 0.0
        self._done = False
        self._messages: list[str] = []
        self._view: PageView | None = None
        self._step_view: StepView | None = None
        self._begun = False
        self._guard: RequestGuard | None = None
        self._expired = False
        self.timings: dict[str, float] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._seed = seed
        self._call(self._end_episode)
        self.task.begin(self._seed)
        self._begun = True
        on_browser_thread(shared_browser)  # a (re)launch has Playwright's own timeout, outside the page's deadline
        return self._call(self._reset)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self._call(lambda: self._step(action))

    def close(self) -> None:
        self._call(self._end_episode)

    def view(self) -> StepView:
        if self._step_view is None:
            raise RuntimeError("call reset() before view()")
        return self._step_view

    def end_episode(self) -> StepView:
        """End an episode the agent did not end (its step budget ran out): the task's final score, then the view.

        The runner calls this after a truncated episode, so a task graded after the episode is graded either way.
        """
        return self._call(self._end_early)

    @property
    def page(self) -> pw.Page | None:
        """The live page (for tests and debugging: use it inside `on_browser_thread`)."""
        return self._page

    def _reset(self) -> tuple[str, dict[str, Any]]:
        start = time.perf_counter()
        try:
            browser = shared_browser()
            self._context = browser.new_context(**self.task.context_options(self._seed))
            self._guard = RequestGuard(self.task.site_policy())
            self._guard.install(self._context)
            self._page = self._context.new_page()
            self._session = self._context.new_cdp_session(self._page)
            self._goal = valid_text(" ".join(self.task.setup(self._page, self._seed).split()))[0]
        except BaseException:
            self._end_episode()
            raise
        self._score, self._done, self._messages = 0.0, False, []
        self._view = observe(self._page)
        obs, info = self._info(self._view, "")
        self.timings["reset"] = time.perf_counter() - start
        return obs, info

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._page is None:
            raise RuntimeError("call reset() before step()")
        start = time.perf_counter()
        error, score, ended = "", self._score, False
        if self._done:
            error = "the episode is over"
        else:
            try:
                parsed = parse_action(action, self.task.allowed_origins)
            except ActionError as rejected:
                error = f"invalid action: {rejected}"  # nothing ran
            else:
                result = run_action(self._page, parsed)
                self._messages.extend(result.messages + result.infeasible)
                error = result.error
                score, ended = self.task.validate(self._page, parsed, self._messages)
        view = self._view = observe(self._page)
        if ended:
            assert self._context is not None
            score = self.task.finish(self._context, self._messages, score)
        reward, self._score, self._done = score - self._score, score, self._done or ended
        obs, info = self._info(view, error)
        self.timings["step"] = time.perf_counter() - start
        return obs, float(reward), bool(info["won"] or info["lost"]), False, info

    def _call(self, work: Callable[[], T]) -> T:
        """`work` on the browser thread, under the step deadline (`limits.step_timeout_s`)."""
        self._expired = False
        return on_browser_thread(lambda: self._guarded(work), self.limits.step_timeout_s, self._deadlines())

    def _deadlines(self) -> tuple[Callable[[], None], ...]:
        """What frees the browser thread once a call passes its deadline (called off that thread), mildest first:
        stop the page's script, then close the episode's context (before a context exists, `on_browser_thread`
        closes the browser)."""

        def interrupt() -> None:
            self._expired = True
            if self._session is not None:
                interrupt_soon(self._session)

        def close_context() -> None:
            if self._context is not None:
                close_soon(self._context)

        return interrupt, close_context

    def _guarded(self, work: Callable[[], T]) -> T:
        """A browser that crashed or vanished, or a page past its deadline, is an infrastructure failure, not the
        agent's: end the episode, say so (the runner retries it on a fresh context). A call that still returned after
        its deadline (its script was stopped, then it went on) fails too: the page is no longer the one it showed."""
        try:
            result = work()
        except Exception as error:  # past a deadline, Playwright's own races can raise more than pw.Error
            if not (self._expired or isinstance(error, pw.Error)):
                raise
            self._end_episode()
            if not self._expired:
                raise InfraError(
                    f"browser failure: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
                ) from None
        else:
            if not self._expired:
                return result
            self._end_episode()
        raise InfraError(
            f"browser call timed out after {self.limits.step_timeout_s:g} s (env.step_timeout_s): the page did not"
            " answer (an endless script?), and its episode was ended"
        )

    def _end_early(self) -> StepView:
        if self._page is None or self._view is None:
            raise RuntimeError("call reset() before end_episode()")
        if not self._done and self._context is not None:
            self._score = self.task.finish(self._context, self._messages, self._score)
            self._done = True
        self._info(self._view, "")
        return self.view()

    def _end_episode(self) -> None:
        close_quietly(self._context)
        self._context, self._page, self._guard, self._session = None, None, None, None
        if self._begun:
            self._begun = False
            self.task.end()

    def _info(self, view: PageView, error: str) -> tuple[str, dict[str, Any]]:
        text = clean_text(view.axtree, OBS_CHARS)
        if error:
            text = clean_text(f"Last action failed: {error}\n{text}", OBS_CHARS)
        won = self._done and self._score > 0
        info = self.task.episode_info()
        offered = offer(view, self._goal, self.task.extra_candidates, self.limits.max_candidates)
        blocked = self._guard.take_blocked() if self._guard is not None else []
        self._step_view = StepView(
            task=self.task_id,
            observation=text,
            candidates=tuple(offered.candidates),
            state={  # what retrieval compares: the goal, the page's normalised URL, and the page itself
                "goal": clean_text(self._goal, FIELD_CHARS),
                "url": normalize_url(view.url, self.task.sites),
                "observation": clean_text(view.axtree, FIELD_CHARS) or "(empty page)",
            },
            layout=WebPrompt(self.task.instruction),
            goal=self._goal,
            url=view.url,
            score=float(self._score),
            max_score=1.0,
            won=bool(won),
            lost=bool(self._done and not won),
            artifacts=info.artifacts,
            ungraded=info.ungraded,
            html=view.html,
            blocked=tuple(blocked),
            candidates_cut=offered.cut,
        )
        extra = {
            "last_action_error": error,
            "messages": list(self._messages),
            "instruction": self.task.instruction,
            "blocked_requests": blocked,
            "candidates_cut": offered.cut,
        }
        return text, {**self._step_view.info(), **extra}
