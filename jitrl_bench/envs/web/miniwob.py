"""MiniWoB++: small real web tasks opened from the `miniwob` package over file:// (no server), played as `WebEnv`s.

Each episode loads the task page, seeds the page's random generator from the episode seed (BrowserGym's MiniWoB task
does this, and hides the page's own goal/score display), and reads the reward the page computes itself.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import playwright.sync_api as pw
from browsergym.miniwob import ALL_MINIWOB_TASKS
from browsergym.miniwob.base import AbstractMiniwobTask

from jitrl_bench.checks import BadValue, name, non_empty, one_or_many
from jitrl_bench.contract import GameFiles, Regrader, Requirement, SharedCopies
from jitrl_bench.contract.web_actions import Action
from jitrl_bench.envs.web.browser import chromium_requirement
from jitrl_bench.envs.web.env import Grading, WebEnv, WebLimits
from jitrl_bench.envs.web.origin_guard import SitePolicy
from jitrl_bench.errors import UserError

TASKS: dict[str, type[AbstractMiniwobTask]] = {cls.subdomain: cls for cls in ALL_MINIWOB_TASKS}
DEFAULT_TASKS = ["click-button", "enter-text", "click-link"]
EPISODE_MAX_MS = 1_000_000  # the page's own timer; steps are paced by the agent, so effectively no time limit


def miniwob_url() -> str:
    """file:// URL of the task pages shipped in the `miniwob` package (with the trailing slash BrowserGym expects)."""
    spec = find_spec("miniwob")
    locations = list(spec.submodule_search_locations or []) if spec else []
    pages = Path(locations[0], "html", "miniwob") if locations else None
    if pages is None or not (pages / "click-button.html").is_file():
        raise UserError("MiniWoB++ task pages not found: pip install miniwob==1.1.0 browsergym-miniwob")
    return pages.as_uri() + "/"


class MiniWoBTask:
    """One MiniWoB++ task: BrowserGym's task class set up on our page; reward 1 when the page's raw reward is > 0."""

    allowed_origins: tuple[str, ...] = ()  # every task lives on one page: no goto
    instruction = ""
    extra_candidates: tuple[tuple[str, str], ...] = ()
    sites: dict[str, str] = {}  # noqa: RUF012 (read only: MiniWoB pages are named by their file)

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url
        self._task: AbstractMiniwobTask | None = None

    def _new(self, seed: int | None) -> AbstractMiniwobTask:
        return TASKS[self.name](seed=0 if seed is None else int(seed), base_url=self.base_url)

    def begin(self, seed: int | None) -> None:
        pass

    def end(self) -> None:
        pass

    def context_options(self, seed: int | None) -> dict[str, Any]:
        return {"viewport": dict(self._new(seed).viewport)}

    def site_policy(self) -> SitePolicy:
        # The package's own files (the task pages load ../core/*.js), nothing else: no network, no other file.
        return SitePolicy(files=self.base_url.rstrip("/").rsplit("/", 1)[0] + "/")

    def setup(self, page: pw.Page, seed: int | None) -> str:
        self._task = self._new(seed)
        goal, _ = self._task.setup(page)
        return str(goal)

    def validate(self, page: pw.Page, action: Action, messages: list[str]) -> tuple[float, bool]:
        assert self._task is not None
        reward, done, _, _ = self._task.validate(page, messages)
        return float(reward > 0), bool(done)

    def finish(self, context: pw.BrowserContext, messages: list[str], score: float) -> float:
        return score

    def episode_info(self) -> Grading:
        return Grading()


@dataclass
class MiniWoBConfig(WebLimits):
    """MiniWoB++ tasks by name, e.g. click-button (configs/env/miniwob.yaml); each env episode is seeded."""

    name: str = "miniwob"
    """Environment name in results."""
    tasks: Any = field(default_factory=lambda: list(DEFAULT_TASKS))
    """Task name, or a list of names (the pages in miniwob/html/miniwob, without .html). Typed Any because OmegaConf
    cannot validate a `str | list[str]` union; `task_names()` normalises it."""

    def check(self) -> None:
        super().check()
        name("name", self.name)
        names = self.task_names()
        non_empty("tasks", names)
        for task in names:
            if task not in TASKS:
                close = difflib.get_close_matches(task, TASKS, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else f"e.g. {', '.join(DEFAULT_TASKS)}"
                raise BadValue("tasks", task, f"not a MiniWoB++ task; {hint}")

    def task_names(self) -> list[str]:
        return one_or_many(self.tasks)

    def make(self, task: str) -> WebEnv:
        if task not in self.task_names():
            raise UserError(f"unknown MiniWoB task {task!r}; this config has: {', '.join(self.task_names())}")
        return WebEnv(MiniWoBTask(task, miniwob_url()), task, self)

    def use_run_dir(self, path: Path) -> None:
        return None  # a MiniWoB episode leaves no files

    def regrader(self) -> Regrader | None:
        return None  # graded by the page itself, during the episode

    def test_split(self) -> dict[str, str]:
        return {}  # MiniWoB++ defines no split: the run's held-out tasks or seeds

    def shared(self) -> SharedCopies | None:
        return None  # each episode opens its own page

    def requirements(self) -> list[Requirement]:
        return [chromium_requirement()]

    def game_files(self) -> GameFiles | None:
        return None  # the task pages ship in the miniwob package
