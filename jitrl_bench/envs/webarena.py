"""WebArena-Verified: the 812 audited WebArena tasks on the user's self-hosted sites, graded offline from a HAR.

Task definitions come from the `webarena-verified` package; site URLs from the config or the `WA_*` environment
variables. Each episode runs in a fresh browser context that records every request to a HAR file; the agent ends the
episode with its answer (`send_msg_to_user` / `answer`, in webarena-verified's JSON format). Grading never looks at the
live page: once the episode is over the context is closed (Playwright writes the HAR) and `grade` scores the answer and
the recording with webarena-verified's evaluator, so a run can be re-graded later from its files alone.

A site that is down or answers 5xx is not the agent's failure: it raises `InfraError`, which the runner records as an
error instead of a lost episode.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import playwright.sync_api as pw
from webarena_verified.api import WebArenaVerified
from webarena_verified.types.config import WebArenaVerifiedConfig
from webarena_verified.types.eval import EvalStatus
from webarena_verified.types.task import WebArenaVerifiedTask

from jitrl_bench.envs.actions import MESSAGE_OPERATIONS, Action
from jitrl_bench.envs.web import INSTRUCTION, WebEnv
from jitrl_bench.errors import InfraError, UserError

SITES = ("shopping", "shopping_admin", "reddit", "gitlab", "map", "wikipedia", "homepage")
SUBSETS = ("all", "hard", "non-hard")
NAV_TIMEOUT_MS = 30_000  # real WebArena pages (Magento, GitLab) are slow on a loaded host

WA_INSTRUCTION = INSTRUCTION + (
    " When the task is done, reply with answer('<json>') where <json> is "
    '{"task_type": "RETRIEVE" | "MUTATE" | "NAVIGATE", "status": "SUCCESS" (or an error status such as '
    '"NOT_FOUND_ERROR"), "retrieved_data": [the requested values] for RETRIEVE, else null}.'
)
DONE_ANSWERS = tuple(
    (
        f"send_msg_to_user({json.dumps({'task_type': kind, 'status': 'SUCCESS', 'retrieved_data': None})!r})",
        f"answer {kind}",
    )
    for kind in ("NAVIGATE", "MUTATE")
)
"""Offered on every page: the answers that end a navigation or mutation task (retrieval answers carry data)."""


def env_var(site: str) -> str:
    """`WA_GITLAB` for gitlab, `WA_SHOPPING_ADMIN` for shopping_admin..."""
    return f"WA_{site.upper()}"


def placeholder(site: str) -> str:
    """The token webarena-verified's task data uses for a site's base URL, e.g. `__GITLAB__`."""
    return f"__{site.upper()}__"


def site_urls(configured: dict[str, str] | None = None) -> dict[str, str]:
    """Base URL per site: the config's, else `$WA_<SITE>`; sites with neither are absent. No trailing slash."""
    urls = {site: os.environ.get(env_var(site), "") for site in SITES}
    urls.update({str(k): str(v) for k, v in (configured or {}).items()})
    unknown = sorted(set(urls) - set(SITES))
    if unknown:
        raise UserError(f"unknown WebArena site(s) {', '.join(unknown)}; sites are: {', '.join(SITES)}")
    return {site: url.rstrip("/") for site, url in urls.items() if url}


@cache
def _verified(urls: tuple[tuple[str, str], ...]) -> WebArenaVerified:
    """webarena-verified's facade (it loads the 812-task dataset once, about 0.4 s), per set of site URLs."""
    environments = {placeholder(site): {"urls": [url]} for site, url in urls}
    return WebArenaVerified(config=WebArenaVerifiedConfig(environments=environments or None))


def verified(urls: dict[str, str] | None = None) -> WebArenaVerified:
    return _verified(tuple(sorted(site_urls(urls).items())))


def subset_ids(subset: str) -> set[int] | None:
    """Task ids of a webarena-verified subset ("hard": 258 tasks, "non-hard"), None for "all"."""
    if subset not in SUBSETS:
        raise UserError(f"unknown WebArena-Verified subset {subset!r}; use one of: {', '.join(SUBSETS)}")
    if subset == "all":
        return None
    root = Path(WebArenaVerifiedConfig().test_data_file).parent
    data = json.loads((root / "subsets" / f"webarena-verified-{subset}.json").read_text())
    return {int(i) for i in data["task_ids"]}


def render(template: str, urls: dict[str, str]) -> str:
    """A task URL with its `__SITE__` placeholders replaced; UserError when a site's URL is not configured."""
    for site in SITES:
        token = placeholder(site)
        if token in template:
            if site not in urls:
                raise UserError(f"task needs the {site} site: set ${env_var(site)} or env.urls.{site}")
            template = template.replace(token, urls[site])
    return template


def grade(task_id: int, answer: str | None, har_path: str | Path, urls: dict[str, str] | None = None) -> float:
    """Score one finished episode offline: webarena-verified's evaluator on the agent's answer and the HAR.

    `urls` must be the site URLs the episode ran against (default: `$WA_*`), so recorded URLs map back to the task's
    placeholders. Deterministic: the same answer and HAR always grade the same. InfraError when it cannot grade.
    """
    har = Path(har_path)
    if not har.is_file() or har.stat().st_size == 0:
        raise InfraError(f"no network trace at {har}: the episode's browser context was never closed?")
    with warnings.catch_warnings():  # url-normalize warns about an idna option on every URL it reads
        warnings.simplefilter("ignore", DeprecationWarning)
        result = verified(urls).evaluate_task(task_id=int(task_id), agent_response=answer, network_trace=har)
    if result.status == EvalStatus.ERROR:
        raise InfraError(f"webarena-verified could not grade task {task_id}: {result.error_msg}")
    return float(result.score)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebArenaTask:
    """One WebArena-Verified task on the configured sites; records a HAR per episode and grades it at the end."""

    instruction = WA_INSTRUCTION
    extra_candidates = DONE_ANSWERS

    def __init__(
        self, task: WebArenaVerifiedTask, urls: dict[str, str], har_dir: Path, grade_on_end: bool = True
    ) -> None:
        self.task = task
        self.urls = urls
        self.har_dir = har_dir
        self.grade_on_end = grade_on_end
        sites = [str(site) for site in task.sites]
        missing = [site for site in sites if site not in urls]
        if missing:
            raise UserError(f"task {task.task_id} needs {', '.join(missing)}: set ${env_var(missing[0])} or env.urls")
        self.allowed_origins = tuple(sorted({_origin(url) for url in urls.values()}))
        self.har: Path | None = None
        self.answer: str | None = None
        self._failures: list[str] = []

    def context_options(self, seed: int | None) -> dict[str, Any]:
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"  # unique across envs and processes
        self.har = self.har_dir / f"task{self.task.task_id}-{stamp}.har"
        options: dict[str, Any] = {"record_har_path": str(self.har), "viewport": {"width": 1280, "height": 720}}
        headers = os.environ.get("PW_EXTRA_HEADERS")
        if headers:
            options["extra_http_headers"] = {str(k): str(v) for k, v in json.loads(headers).items()}
        return options

    def setup(self, page: pw.Page, seed: int | None) -> str:
        self.answer, self._failures = None, []
        page.set_default_navigation_timeout(NAV_TIMEOUT_MS)
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_failed)
        start = render(self.task.start_urls[0], self.urls)
        try:
            page.goto(start)
        except pw.Error as error:
            raise InfraError(f"cannot open {start}: {str(error).splitlines()[0]}") from None
        self._raise_failures()
        return str(self.task.intent)

    def validate(self, page: pw.Page, action: Action, messages: list[str]) -> tuple[float, bool]:
        self._raise_failures()
        if action.name in MESSAGE_OPERATIONS:
            self.answer = messages[-1] if messages else ""
            return 0.0, True
        return 0.0, False

    def finish(self, context: pw.BrowserContext, messages: list[str], score: float) -> float:
        context.close()  # Playwright writes the HAR now; grading reads only the file
        if not self.grade_on_end or self.har is None:
            return score
        return grade(self.task.task_id, self.answer, self.har, self.urls)

    def episode_info(self) -> dict[str, Any]:
        return {"har": str(self.har) if self.har else "", "answer": self.answer or "", "task_id": self.task.task_id}

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
class WebArenaConfig:
    """WebArena-Verified tasks by id and/or site (configs/env/webarena_verified.yaml); needs the sites running."""

    name: str = "webarena_verified"
    """Environment name in results."""
    task: Any = field(default_factory=list)
    """Task id or list of ids (e.g. 44); empty: every task of `sites` in `subset`. Typed Any (int or list)."""
    sites: list[str] = field(default_factory=list)
    """Keep only tasks that use these sites only (gitlab, shopping, ...); empty: no filter."""
    subset: str = "all"
    """all (812 tasks) | hard (258) | non-hard."""
    urls: dict[str, str] = field(default_factory=dict)
    """Base URL per site, e.g. {gitlab: "http://host:8023"}; a site missing here comes from $WA_<SITE>."""
    har_dir: str | None = None
    """Where each episode's HAR is written; default a temporary folder."""
    grade_on_end: bool = True
    """Grade (offline, from the HAR) when the agent answers, so the final step's reward is the grade."""

    def tasks(self) -> list[str]:
        ids = [self.task] if isinstance(self.task, int | str) else [int(t) for t in self.task]
        keep = subset_ids(self.subset)
        unknown_sites = sorted(set(self.sites) - set(SITES))
        if unknown_sites:
            raise UserError(f"unknown WebArena site(s) {', '.join(unknown_sites)}; sites are: {', '.join(SITES)}")
        chosen = []
        for task in verified(self.urls).get_tasks():
            if ids and task.task_id not in {int(i) for i in ids}:
                continue
            if self.sites and not {str(s) for s in task.sites} <= set(self.sites):
                continue
            if keep is not None and task.task_id not in keep:
                continue
            chosen.append(str(task.task_id))
        missing = sorted({int(i) for i in ids} - {int(t) for t in chosen})
        if missing and not (self.sites or keep is not None):
            raise UserError(f"unknown WebArena-Verified task id(s): {', '.join(map(str, missing))} (ids are 0-811)")
        return chosen

    def make(self, task: str) -> WebEnv:
        if task not in self.tasks():
            raise UserError(f"unknown WebArena-Verified task {task!r} for this config")
        har_dir = Path(self.har_dir).expanduser() if self.har_dir else Path(tempfile.mkdtemp(prefix="jitrl-har-"))
        har_dir.mkdir(parents=True, exist_ok=True)
        definition = verified(self.urls).get_task(int(task))
        return WebEnv(WebArenaTask(definition, site_urls(self.urls), har_dir, self.grade_on_end), task)
