"""WebArena-Verified: the 812 audited WebArena tasks (and the 258-task hard subset), graded offline from a HAR.

Task definitions and the evaluator come from the `webarena-verified` package. Its grader never looks at the live
page: it scores the agent's JSON answer and the network trace Playwright recorded, so an episode graded once can be
graded again, identically, from the run directory alone (`jitrl-bench regrade`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import playwright.sync_api as pw
from webarena_verified.api import WebArenaVerified
from webarena_verified.types.config import WebArenaVerifiedConfig
from webarena_verified.types.eval import EvalStatus

from jitrl_bench.checks import one_of
from jitrl_bench.envs.web.webarena.episode import Artifacts, Grader, TaskDef, WebArenaConfigBase
from jitrl_bench.envs.web.webarena.metadata import dependencies
from jitrl_bench.envs.web.webarena.sites import placeholder
from jitrl_bench.errors import InfraError, UserError

SUBSETS = ("all", "hard", "non-hard")
ANSWER_FORMAT = (
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


@cache
def _verified(urls: tuple[tuple[str, str], ...]) -> WebArenaVerified:
    """webarena-verified's facade (it loads the 812-task dataset once, about 0.4 s), per set of site URLs."""
    environments = {placeholder(site): {"urls": [url]} for site, url in urls}
    return WebArenaVerified(config=WebArenaVerifiedConfig(environments=environments or None))


def verified(urls: dict[str, str] | None = None) -> WebArenaVerified:
    return _verified(tuple(sorted((urls or {}).items())))


def grade(task_id: int, answer: str | None, har_path: str | Path, urls: dict[str, str]) -> float:
    """Score one finished episode offline: webarena-verified's evaluator on the agent's answer and the HAR.

    `urls` must be the site URLs the episode ran against, so recorded URLs map back to the task's placeholders.
    Deterministic: the same answer and HAR always grade the same. InfraError when it cannot grade.
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


class VerifiedGrader:
    """webarena-verified's evaluator: offline, from the answer and the HAR."""

    oracle_capable = False
    infeasible_answer: str | None = None  # an infeasible task is answered in the JSON format, with an error status
    instruction = ANSWER_FORMAT
    done_answers = DONE_ANSWERS

    def needs_page(self, task: TaskDef) -> bool:
        return False

    def grade(self, task: TaskDef, artifacts: Artifacts, page: pw.Page | None) -> float:
        if artifacts.answer is None:  # out of steps without an answer: webarena-verified needs one to grade
            return 0.0
        return grade(task.task_id, artifacts.answer, artifacts.har, artifacts.urls)


def subset_ids(subset: str) -> set[int] | None:
    """Task ids of a webarena-verified subset ("hard": 258 tasks, "non-hard"), None for "all"."""
    if subset not in SUBSETS:
        raise UserError(f"unknown WebArena-Verified subset {subset!r}; use one of: {', '.join(SUBSETS)}")
    if subset == "all":
        return None
    root = Path(WebArenaVerifiedConfig().test_data_file).parent
    data = json.loads((root / "subsets" / f"webarena-verified-{subset}.json").read_text())
    return {int(i) for i in data["task_ids"]}


@dataclass
class VerifiedConfig(WebArenaConfigBase):
    """WebArena-Verified tasks by id, site and subset (configs/env/webarena_verified.yaml)."""

    name: str = "webarena_verified"
    subset: str = "all"
    """all (812 tasks) | hard (258) | non-hard."""

    def definitions(self) -> list[TaskDef]:
        parents = dependencies("webarena_verified")
        return [
            TaskDef(
                int(t.task_id), str(t.intent), tuple(str(s) for s in t.sites), " |AND| ".join(t.start_urls),
                parents.get(int(t.task_id), ()),
            )
            for t in verified().get_tasks()
        ]  # fmt: skip

    @cached_property
    def _subset(self) -> set[int] | None:
        return subset_ids(self.subset)

    def keep(self, task: TaskDef) -> bool:
        return self._subset is None or task.task_id in self._subset

    def check(self) -> None:
        one_of("subset", self.subset, SUBSETS)
        super().check()

    @cached_property
    def grader(self) -> Grader:
        return VerifiedGrader()
