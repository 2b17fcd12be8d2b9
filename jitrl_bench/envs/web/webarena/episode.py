"""WebArena on the user's self-hosted sites: one episode lifecycle shared by every WebArena task set.

A task set (WebArena-Verified, the original 812, WebArena-Lite) supplies task definitions and a grader; everything
else is here once: lease a copy of the sites, start signed in, record every request to a HAR, let the agent act until
it answers (`answer(...)` / `send_msg_to_user(...)`) or runs out of steps, then grade **after** the episode. What the
grade was computed from (the answer, the HAR, the site URLs, the final URL) goes into the episode's `artifacts`, so
`jitrl-bench regrade RUN_DIR` can grade the run again from its files.

A site that is down, answers 5xx or logs the agent out is not the agent's failure: it raises `InfraError`, which the
runner retries and then records as an error instead of a lost episode.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import playwright.sync_api as pw

from jitrl_bench.checks import BadValue, each_one_of, name, one_of
from jitrl_bench.contract import GameFiles, JudgeChoice, Requirement, SharedCopies
from jitrl_bench.contract.web_actions import MESSAGE_OPERATIONS, Action
from jitrl_bench.envs.web.browser import shared_browser
from jitrl_bench.envs.web.env import Grading, WebEnv, WebLimits
from jitrl_bench.envs.web.origin_guard import SitePolicy, scrub_har
from jitrl_bench.envs.web.webarena.needs import webarena_requirements
from jitrl_bench.envs.web.webarena.sites import (
    LOGIN_FORMS,
    LOGIN_MODES,
    RESET_MODES,
    SITES,
    Instance,
    InstancePool,
    Logins,
    ResetPolicy,
    env_var,
    extra_headers,
    instances_from,
    render,
)
from jitrl_bench.errors import InfraError, Ungradable, UserError

NAV_TIMEOUT_MS = 30_000  # real WebArena pages (Magento, GitLab) are slow on a loaded host


@dataclass(frozen=True)
class TaskDef:
    """One WebArena task as the env needs it; URLs keep their `__SITE__` placeholders."""

    task_id: int
    intent: str
    sites: tuple[str, ...]
    start_url: str
    depends_on: tuple[int, ...] = ()
    """Tasks whose site changes this one expects (they run first in a run)."""


@dataclass
class Artifacts:
    """What an episode's grade is computed from; stored with the episode so a run can be re-graded."""

    task_id: int
    answer: str | None
    har: str
    urls: dict[str, str]
    final_url: str = ""
    instance: int = 0


class Grader(Protocol):
    """Scores a finished episode (0..1)."""

    def needs_page(self, task: TaskDef) -> bool:
        """True when grading `task` reads the live page (the original `program_html` checks): it runs before the
        context closes, and `regrade` cannot redo it. False: grading reads only the artifacts (answer, HAR, final
        URL), so it runs after the episode and can be redone offline."""
        ...

    oracle_capable: bool
    """True when the grader can score on the live page mid-episode (what `env.oracle_stop` needs)."""

    instruction: str
    """How the agent must answer for this grader (appended to the system prompt)."""

    infeasible_answer: str | None
    """The answer that `report_infeasible(reason)` stands for (the original sets: "N/A", as BrowserGym maps it);
    None: the reason text is the answer."""

    done_answers: tuple[tuple[str, str], ...]
    """(action, key) answers offered on every page (those that end a task without retrieved data)."""

    def grade(self, task: TaskDef, artifacts: Artifacts, page: pw.Page | None) -> float: ...


def ordered(tasks: Iterable[TaskDef]) -> list[TaskDef]:
    """Tasks by id, each after the tasks it depends on (among those chosen); stable and cycle-safe."""
    chosen = {t.task_id: t for t in sorted(tasks, key=lambda t: t.task_id)}
    out: list[TaskDef] = []
    state: dict[int, int] = {}  # 1 = visiting, 2 = placed

    def place(task_id: int) -> None:
        if state.get(task_id):
            return
        state[task_id] = 1
        for parent in chosen[task_id].depends_on:
            if parent in chosen and state.get(parent) != 1:
                place(parent)
        state[task_id] = 2
        out.append(chosen[task_id])

    for task_id in chosen:
        place(task_id)
    return out


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebArenaTask:
    """One WebArena task on a leased copy of the sites (`WebTask` for `WebEnv`)."""

    def __init__(self, config: WebArenaConfigBase, task: TaskDef, grader: Grader) -> None:
        self.config = config
        self.task = task
        self.grader = grader
        self.instruction = grader.instruction
        self.extra_candidates = grader.done_answers
        self.har_dir = config.har_path()
        every_instance = config.pool.instances
        for instance in every_instance:
            missing = [site for site in task.sites if site not in instance.urls]
            if missing:
                needs = ", ".join(missing)
                raise UserError(
                    f"task {task.task_id} needs {needs}: set ${env_var(missing[0])} or env.urls, env.instances"
                )
        self.allowed_origins = tuple(sorted({_origin(u) for i in every_instance for u in i.urls.values()}))
        self.instance: Instance | None = None
        self._leased = False
        self.har: Path | None = None
        self.answer: str | None = None
        self.ungraded = ""
        self._final_url = ""
        self._failures: list[str] = []
        self._policy = SitePolicy()
        self._headers: dict[str, str] = {}

    @property
    def urls(self) -> dict[str, str]:
        return self.instance.urls if self.instance else {}

    @property
    def sites(self) -> dict[str, str]:
        return self.urls

    def begin(self, seed: int | None) -> None:
        self.instance = self.config.pool.acquire(str(self.task.task_id))
        self._leased = True

    def end(self) -> None:
        scrub_har(self.har, self._policy)  # an episode cut short wrote its HAR when its context closed
        self._release()
        self.instance = None

    def _release(self) -> None:
        """Hand the copy of the sites back (once) as soon as the episode is over, not at this env's next reset: an
        idle env of another task must not hold it. `self.instance` stays for the episode's artifacts."""
        if self.instance is not None and self._leased:
            self._leased = False
            self.config.pool.release(self.instance)

    def context_options(self, seed: int | None) -> dict[str, Any]:
        assert self.instance is not None, "begin() leases an instance first"
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"  # unique across envs and processes
        self.har = self.har_dir / f"task{self.task.task_id}-{stamp}.har"
        options: dict[str, Any] = {"record_har_path": str(self.har), "viewport": {"width": 1280, "height": 720}}
        options.update(self.config.logins.context_options(shared_browser(), self.instance, list(self.task.sites)))
        # Extra headers go to the task's sites only, request by request (origin_guard), never context-wide.
        self._headers = {**options.pop("extra_http_headers", {}), **extra_headers()}
        return options

    def site_policy(self) -> SitePolicy:
        self._policy = SitePolicy(tuple(sorted({_origin(u) for u in self.urls.values()})), headers=self._headers)
        return self._policy

    def setup(self, page: pw.Page, seed: int | None) -> str:
        self.answer, self._failures, self._final_url, self.ungraded = None, [], "", ""
        page.set_default_navigation_timeout(NAV_TIMEOUT_MS)
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_failed)
        start = render(self.task.start_url, self.urls)
        try:
            for url in start.split(" |AND| "):  # multi-site tasks list one start page per site; the last stays open
                page.goto(url)
        except pw.Error as error:
            raise InfraError(f"cannot open {start}: {str(error).splitlines()[0]}") from None
        self._raise_failures()
        self._check_signed_in(page)
        return self.task.intent

    def validate(self, page: pw.Page, action: Action, messages: list[str]) -> tuple[float, bool]:
        self._raise_failures()
        self._final_url = page.url
        if action.name in MESSAGE_OPERATIONS:
            infeasible = action.name == "report_infeasible" and self.grader.infeasible_answer is not None
            self.answer = self.grader.infeasible_answer if infeasible else (messages[-1] if messages else "")
            return 0.0, True
        if self.config.oracle_stop:  # the paper's protocol: labelled in every result row
            score = self._grade(page)
            return score, score >= 1.0
        return 0.0, False

    def finish(self, context: pw.BrowserContext, messages: list[str], score: float) -> float:
        page = context.pages[0] if context.pages else None
        if page is not None:
            self._final_url = page.url
        live = self.grader.needs_page(self.task)
        graded = score
        try:
            if self.config.grade_on_end and live:
                graded = self._grade(page)
        finally:
            context.close()  # Playwright writes the HAR now
            scrub_har(self.har, self._policy)  # before grading: only the sites' requests, no header values
            self._release()
        if self.config.grade_on_end and not live:
            graded = self._grade(None)
        return graded

    def _grade(self, page: pw.Page | None) -> float:
        """The grader's score; 0 and the reason in `self.ungraded` when it cannot grade now (the episode is kept)."""
        try:
            self.ungraded = ""
            return self.grader.grade(self.task, self.artifacts(), page)
        except Ungradable as reason:
            self.ungraded = str(reason)
            return 0.0

    def artifacts(self) -> Artifacts:
        return Artifacts(
            task_id=self.task.task_id,
            answer=self.answer,
            har=str(self.har) if self.har else "",
            urls=dict(self.urls),
            final_url=self._final_url,
            instance=self.instance.index if self.instance else 0,
        )

    def episode_info(self) -> Grading:
        return Grading(artifacts=vars(self.artifacts()), ungraded=self.ungraded)

    def _check_signed_in(self, page: pw.Page) -> None:
        """A start page that lands on a login form means the session expired: forget it and retry the episode."""
        if self.config.login != "ui" or self.instance is None:
            return
        for site in self.task.sites:
            on_site = site in LOGIN_FORMS and site in self.urls and page.url.startswith(self.urls[site])
            if on_site and page.locator("input[type=password]").count():
                self.config.logins.forget(self.instance)
                raise InfraError(f"{site} sent the agent to its login page: session expired (it will sign in again)")

    def _on_response(self, response: pw.Response) -> None:
        request = response.request
        if response.status >= 500 and request.is_navigation_request() and request.frame.parent_frame is None:
            self._failures.append(f"HTTP {response.status} from {response.url}")

    def _on_failed(self, request: pw.Request) -> None:
        reason = request.failure or ""
        if request.is_navigation_request() and request.frame.parent_frame is None and "ERR_ABORTED" not in reason:
            self._failures.append(f"{reason} for {request.url}")

    def _raise_failures(self) -> None:
        if self._failures:
            raise InfraError(f"site failure: {self._failures[0]}")


@dataclass
class WebArenaConfigBase(WebLimits):
    """What every WebArena task set's config has (configs/env/webarena*.yaml); subclasses supply tasks and a grader."""

    name: str = "webarena"
    """Environment name in results (`+oracle-stop` is appended when `oracle_stop` is on)."""
    tasks: Any = field(default_factory=list)
    """Task id or list of ids (e.g. 44); empty: every task of `sites`. Typed Any (int or list)."""
    sites: list[str] = field(default_factory=list)
    """Keep only tasks that use these sites only (gitlab, shopping, ...); empty: no filter."""
    urls: dict[str, str | None] = field(default_factory=dict)
    """Base URL per site, e.g. {gitlab: "http://host:8023"}; a site missing here comes from $WA_<SITE>."""
    instances: list[dict[str, str]] = field(default_factory=list)
    """Several copies of the sites for parallel episodes: [{gitlab: url, ..., reset: reset-server-url}, ...];
    one episode per copy at a time. Empty: one copy from `urls` / $WA_* (reset server $WA_FULL_RESET)."""
    login: str = "ui"
    """ui (sign in through each site's form; accounts from $WA_<SITE>_USERNAME/_PASSWORD) | header (Magento admin's
    auto-login header) | none."""
    reset: str = "none"
    """Reset a copy of the sites: none | run (once per copy, first) | task (before each new task on a copy)."""
    reset_command: list[str] = field(default_factory=list)
    """argv of a program that resets a copy (gets $WA_INSTANCE); default: the reset server's /reset."""
    har_dir: str | None = None
    """Where each episode's HAR is written; `jitrl-bench run` puts it in the run directory."""
    grade_on_end: bool = True
    """Grade when the episode ends (the last step's reward is the grade); false: grade later with `regrade`."""
    oracle_stop: bool = False
    """The reference code's protocol: grade after every step and stop on success (an oracle leak). Only for graders
    that read the live page; every result row's env name then says `+oracle-stop`."""

    def __post_init__(self) -> None:
        if self.oracle_stop and not self.name.endswith("+oracle-stop"):
            self.name += "+oracle-stop"

    def check(self) -> None:
        super().check()
        name("name", self.name)
        each_one_of("sites", self.sites, SITES)
        each_one_of("urls", list(self.urls), SITES)
        one_of("login", self.login, LOGIN_MODES)
        one_of("reset", self.reset, RESET_MODES)
        try:
            self.task_names()  # the ids exist in this task set (reads the task file; nothing starts)
        except UserError as e:
            raise BadValue("tasks", self.tasks, str(e)) from None
        if self.oracle_stop and not self.grader.oracle_capable:
            raise BadValue("oracle_stop", True, f"{self.name} grades offline from the HAR, never during an episode")

    def use_run_dir(self, path: Path) -> None:
        if not self.har_dir:
            self.har_dir = str(path / "har")  # the network traces stay with the run: `regrade` reads them

    def regrader(self) -> WebArenaConfigBase:
        return self

    def use_judge(self, judge: JudgeChoice) -> None:
        """No LLM judge in this task set's grades (the original WebArena's overrides this)."""

    def definitions(self) -> list[TaskDef]:
        """Every task of this set (subclasses)."""
        raise NotImplementedError

    def keep(self, task: TaskDef) -> bool:
        """An extra filter of a subclass (e.g. a subset); True by default."""
        return True

    @cached_property
    def grader(self) -> Grader:
        raise NotImplementedError

    def test_split(self) -> dict[str, str]:
        return {}  # the WebArena sets are evaluation sets: no train split to learn from

    def shared(self) -> SharedCopies | None:
        return self.pool

    def requirements(self) -> list[Requirement]:
        return webarena_requirements()

    def game_files(self) -> GameFiles | None:
        return None  # the tasks ship in the packages; the sites are servers (requirements)

    @cached_property
    def pool(self) -> InstancePool:
        policy = ResetPolicy(self.reset, list(self.reset_command))
        return InstancePool(instances_from(self.instances, self.urls), policy, on_reset=self.logins.forget)

    @cached_property
    def logins(self) -> Logins:
        return Logins(self.login)

    @cached_property
    def _by_id(self) -> dict[int, TaskDef]:
        return {t.task_id: t for t in self.definitions()}

    def har_path(self) -> Path:
        folder = Path(self.har_dir).expanduser() if self.har_dir else Path(tempfile.mkdtemp(prefix="jitrl-har-"))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def task_names(self) -> list[str]:
        ids = [self.tasks] if isinstance(self.tasks, int | str) else list(self.tasks)
        try:
            wanted = {int(i) for i in ids}
        except (TypeError, ValueError):
            raise UserError(f"env.tasks={self.tasks!r}: task ids are integers, e.g. env.tasks=[44,45]") from None
        unknown_sites = sorted(set(self.sites) - set(SITES))
        if unknown_sites:
            raise UserError(f"unknown WebArena site(s) {', '.join(unknown_sites)}; sites are: {', '.join(SITES)}")
        missing = sorted(wanted - set(self._by_id))
        if missing:
            known = f"{min(self._by_id)}-{max(self._by_id)}" if self._by_id else "none"
            raise UserError(f"unknown {self.name} task id(s): {', '.join(map(str, missing))} (ids: {known})")
        on_sites = set(self.sites or SITES)
        chosen = [t for t in self._by_id.values() if (not wanted or t.task_id in wanted) and set(t.sites) <= on_sites]
        chosen = [t for t in chosen if self.keep(t)]
        return [str(t.task_id) for t in ordered(chosen)]

    def make(self, task: str) -> WebEnv:
        if task not in self.task_names():
            raise UserError(f"unknown {self.name} task {task!r} for this config")
        return WebEnv(WebArenaTask(self, self._by_id[int(task)], self.grader), task, self)

    def regrade(self, artifacts: Mapping[str, Any]) -> float | None:
        """Grade an episode again from its stored artifacts; None when grading its task needs the live page."""
        stored = Artifacts(**artifacts)
        task = self._by_id[int(stored.task_id)]
        return None if self.grader.needs_page(task) else self.grader.grade(task, stored, None)
