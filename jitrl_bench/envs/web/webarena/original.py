"""The original WebArena (812 tasks, package libwebarena) and WebArena-Lite (165 of them, browsergym-webarenalite),
graded by their own evaluators: string_match on the agent's answer, url_match on the final URL, program_html on the
live page (a helper may navigate a tab of the episode's browser context to the page it checks).

string_match and url_match read only the answer and the final URL, so those tasks are graded from the episode's
artifacts and `jitrl-bench regrade` redoes them offline; program_html needs the live page (`needs_page`). Because the
evaluators can score mid-episode, `env.oracle_stop` (the reference protocol: stop on success) works here.

fuzzy_match and ua_match ask an LLM judge; the library hard-codes OpenAI's gpt-4-1106-preview, here the judge is
`env.judge` (any OpenAI-compatible endpoint). Without one, such a grade raises `JudgeUnavailable`: the episode is kept
as `ungraded` (its reason names the missing judge; never a silent 0), and `jitrl-bench regrade` grades it later.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import playwright.sync_api as pw
import requests

from jitrl_bench.checks import ENV_VAR, BadValue, Checked, at_least, http_url
from jitrl_bench.contract import JudgeChoice
from jitrl_bench.envs.web.webarena.episode import Artifacts, Grader, TaskDef, WebArenaConfigBase
from jitrl_bench.envs.web.webarena.metadata import dependencies
from jitrl_bench.envs.web.webarena.sites import placeholder
from jitrl_bench.errors import InfraError, Ungradable, UserError
from jitrl_bench.net.json_client import JSONClient, message_text

TASK_DATA = {
    "webarena": ("webarena", "test.raw.json", "task_id"),
    "webarenalite": ("browsergym.webarenalite", "test_webarena_lite.raw.json", "old_task_id"),
}
"""Task set → (package, data file in it, the field that is the task id); Lite's tasks keep their original ids."""
LITE_PACKAGE = "_jitrl_webarenalite"
SITE_GLOBALS = {"REDDIT": "reddit", "SHOPPING": "shopping", "SHOPPING_ADMIN": "shopping_admin", "GITLAB": "gitlab",
                "WIKIPEDIA": "wikipedia", "MAP": "map", "HOMEPAGE": "homepage"}  # fmt: skip
"""The site URLs libwebarena reads from the environment at import (its `func:` helpers use them)."""
UNSET_SITE = "http://unset.invalid"
OPENAI_API = "https://api.openai.com/v1"
ANSWER_FORMAT = (
    " When the task asks for information, reply with answer('<just the answer>'), e.g. answer('3'); if the task "
    "cannot be done, answer('N/A'). When it asks you to open a page or change something, do it, then answer('done')."
)
DONE_ANSWERS: tuple[tuple[str, str], ...] = (("answer('done')", "answer done"),)
"""Offered on every page: the answer that ends a navigation or mutation task."""


class JudgeUnavailable(Ungradable):
    """A grade needs the LLM judge (fuzzy_match, ua_match) and none is configured or it cannot be reached: the
    episode is kept as `ungraded` (not replayed, not a 0), and `jitrl-bench regrade` grades it once a judge answers."""


@dataclass
class JudgeConfig(Checked):
    """The LLM judge of fuzzy_match / ua_match (libwebarena: OpenAI's gpt-4-1106-preview)."""

    base_url: str | None = None
    """An OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1. null: $OPENAI_BASE_URL, else OpenAI's API when
    the key variable is set, else no judge (grades that need one raise JudgeUnavailable)."""
    model: str = "gpt-4-1106-preview"
    api_key_env: str | None = "OPENAI_API_KEY"
    """The environment variable holding the key (read from the environment only, never stored); unset: no key sent."""
    timeout_s: float = 60.0
    max_retries: int = 3

    def check(self) -> None:
        if self.base_url is not None:
            http_url("base_url", self.base_url)
        if self.api_key_env is not None and not ENV_VAR.match(self.api_key_env):
            raise BadValue("api_key_env", "***", "give the NAME of the environment variable that holds the key")
        at_least("timeout_s", self.timeout_s, 0.1)
        at_least("max_retries", self.max_retries, 0)


class Judge:
    """Answers the evaluators' chat calls through `JSONClient`; one verdict per prompt per process (temperature 0
    is not bit-exact on every server, and the same artifacts must grade the same twice)."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self._client: JSONClient | None = None
        self._verdicts: dict[str, str] = {}
        self._lock = threading.Lock()

    def endpoint(self) -> str | None:
        key = self.config.api_key_env
        keyed = bool(key and os.environ.get(key))
        return self.config.base_url or os.environ.get("OPENAI_BASE_URL") or (OPENAI_API if keyed else None)

    def chat(self, messages: list[dict[str, str]], temperature: float, max_tokens: int, top_p: float) -> str:
        url = self.endpoint()
        if url is None:
            raise JudgeUnavailable(
                "this grade needs an LLM judge (fuzzy_match/ua_match): set env.judge.base_url or $OPENAI_API_KEY"
            )
        prompt = json.dumps([self.config.model, messages, temperature, max_tokens, top_p])
        with self._lock:
            if prompt in self._verdicts:
                return self._verdicts[prompt]
            try:
                if self._client is None:
                    key = self.config.api_key_env
                    self._client = JSONClient(
                        url, api_key_env=key if key and os.environ.get(key) else None,
                        timeout_s=self.config.timeout_s, max_retries=self.config.max_retries, backoff_s=1.0,
                        max_concurrency=4,
                    )  # fmt: skip
                payload = {"model": self.config.model, "messages": messages, "temperature": temperature,
                           "max_tokens": max_tokens, "top_p": top_p}  # fmt: skip
                verdict = message_text(self._client.post("/chat/completions", payload), url)
            except UserError as error:
                raise JudgeUnavailable(f"LLM judge at {url} (env.judge) failed: {error}") from None
            self._verdicts[prompt] = verdict
            return verdict


_JUDGE: contextvars.ContextVar[Judge | None] = contextvars.ContextVar("webarena_judge", default=None)


def _ask_judge(
    messages: list[dict[str, str]],
    model: str,
    temperature: float,
    max_tokens: int,
    top_p: float,
    context_length: int = 0,
    stop_token: str | None = None,
) -> str:
    """Stands in for libwebarena's `generate_from_openai_chat_completion`: the judge of the grade in progress (the
    configured model replaces the hard-coded one)."""
    judge = _JUDGE.get()
    if judge is None:
        raise JudgeUnavailable("an LLM judge was asked outside a grade")
    return judge.chat(messages, temperature, max_tokens, top_p)


def _data_file(package: str, name: str) -> Path:
    try:
        spec = find_spec(package)  # finds browsergym.webarenalite without running its __init__
    except ModuleNotFoundError:
        spec = None
    for location in list(spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / name).is_file():
            return Path(location) / name
    raise UserError(f"{package} is not installed (its {name}): run `make setup` (libwebarena, browsergym-webarenalite)")


@cache
def task_configs(task_set: str) -> dict[int, dict[str, Any]]:
    """Task id → the task's raw config (URLs as `__GITLAB__`-style placeholders), for `webarena` or `webarenalite`."""
    package, name, id_field = TASK_DATA[task_set]
    return {int(row[id_field]): row for row in json.loads(_data_file(package, name).read_text())}


def definitions(task_set: str) -> list[TaskDef]:
    parents = dependencies(task_set)
    return [
        TaskDef(task_id, str(row["intent"]), tuple(row["sites"]), str(row["start_url"]), parents.get(task_id, ()))
        for task_id, row in task_configs(task_set).items()
    ]


@cache
def evaluators(task_set: str) -> Any:
    """The set's evaluators module, imported on first use, set up so that grading never downloads anything:

    - libwebarena's `env_config` asserts at import that $REDDIT, $SHOPPING, ... are set: unset ones get a placeholder
      for the import (`grade` sets the helpers' URLs per episode instead, see `OriginalGrader`);
    - `word_tokenize` (must_include with a one-character reference) needs nltk's punkt data, which no package ships:
      `preserve_line=True` tokenizes without it (the one difference: a period inside the text stays on its word);
    - the LLM call goes to `_ask_judge`.
    """
    from nltk.tokenize import word_tokenize

    saved = {name: os.environ.get(name) for name in SITE_GLOBALS}
    os.environ.update({name: UNSET_SITE for name, value in saved.items() if not value})
    try:
        with warnings.catch_warnings():  # beartype 0.12 warns about the libraries' typing.Mapping hints at import
            warnings.filterwarnings("ignore", category=UserWarning, module=r"beartype\.")
            module: Any = _import_evaluators(task_set)
    finally:  # the placeholders were for the import only
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    helpers: Any = sys.modules[module.llm_fuzzy_match.__module__]
    module.word_tokenize = partial(word_tokenize, preserve_line=True)
    helpers.generate_from_openai_chat_completion = _ask_judge
    return module


def _import_evaluators(task_set: str) -> ModuleType:
    if task_set == "webarenalite":
        # browsergym.webarenalite's __init__ registers gym tasks and runs nltk.download("punkt_tab") (a download at
        # run time, which fails offline), so its evaluators are loaded under a bare stand-in package instead: the
        # module files are the installed ones and their relative imports (.helper_functions) resolve there.
        if LITE_PACKAGE not in sys.modules:
            package = ModuleType(LITE_PACKAGE)
            package.__path__ = [str(_data_file("browsergym.webarenalite", "evaluators.py").parent)]
            sys.modules[LITE_PACKAGE] = package
        return importlib.import_module(f"{LITE_PACKAGE}.evaluators")
    return importlib.import_module("webarena.evaluation_harness.evaluators")


class OriginalGrader:
    """The task set's own evaluators (`evaluator_router(config)(trajectory, config, page, None)`), as BrowserGym
    calls them: the config with the episode's site URLs, the answer as a final stop action.

    The `func:` helpers of program_html read module-level site URLs; they are set to the graded episode's URLs before
    each grade (grading is serialised by a lock), so every instance is graded against its own sites.
    """

    oracle_capable = True
    infeasible_answer: str | None = "N/A"  # the unachievable tasks' reference; BrowserGym maps the report to it
    instruction = ANSWER_FORMAT
    done_answers = DONE_ANSWERS
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, task_set: str, judge: Judge) -> None:
        self.task_set = task_set
        self.judge = judge

    def _eval(self, task: TaskDef) -> dict[str, Any]:
        return dict(task_configs(self.task_set)[task.task_id]["eval"])

    def needs_page(self, task: TaskDef) -> bool:
        return "program_html" in self._eval(task)["eval_types"]

    def grade(self, task: TaskDef, artifacts: Artifacts, page: pw.Page | None) -> float:
        checks = self._eval(task)
        if artifacts.answer is None and "string_match" in checks["eval_types"]:
            return 0.0  # no answer (out of steps, or mid-episode): nothing to match, and no judge call for it
        text = json.dumps(task_configs(self.task_set)[task.task_id])
        for site, url in artifacts.urls.items():  # BrowserGym's substitution: plain replacement over the JSON text
            text = text.replace(placeholder(site), url)
        module = evaluators(self.task_set)
        helpers = sys.modules[module.llm_fuzzy_match.__module__]
        trajectory = [{}, {"action_type": _stop_action(), "answer": artifacts.answer or ""}]
        with tempfile.TemporaryDirectory(prefix="jitrl-webarena-") as folder, self._lock:
            config_file = Path(folder, f"{task.task_id}.json")
            config_file.write_text(text)
            for name, site in SITE_GLOBALS.items():
                if site in artifacts.urls and hasattr(helpers, name):
                    setattr(helpers, name, artifacts.urls[site])
            tab: pw.Page | None = None
            if page is None:
                if self.needs_page(task):
                    raise ValueError(f"task {task.task_id} is graded on the live page (program_html)")
                target: Any = module.PseudoPage(None, artifacts.final_url)
            elif any(t["url"] != "last" for t in checks.get("program_html") or []):
                tab = page.context.new_page()  # checks that open pages get a tab of their own (Lite's would navigate
                target = module.PseudoPage(tab, page.url)  # the page they get), and read the agent's URL from it
            else:
                target = page
            token = _JUDGE.set(self.judge)
            try:
                return float(module.evaluator_router(config_file)(trajectory, config_file, target, None))
            except (AssertionError, ValueError, pw.Error, requests.RequestException) as error:
                detail = ": " + str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
                failed = f"{self.task_set} evaluator failed on task {task.task_id}"
                raise InfraError(f"{failed}: {type(error).__name__}{detail}") from error
            finally:
                _JUDGE.reset(token)
                if tab is not None:
                    tab.close()


def _stop_action() -> Any:
    from webarena.browser_env.actions import ActionTypes

    return ActionTypes.STOP


@dataclass
class WebArenaConfig(WebArenaConfigBase):
    """The original 812 WebArena tasks and evaluators (configs/env/webarena.yaml)."""

    TASK_SET: ClassVar[str] = "webarena"
    name: str = "webarena"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """The LLM judge of fuzzy_match / ua_match."""

    def definitions(self) -> list[TaskDef]:
        return definitions(self.TASK_SET)

    @cached_property
    def grader(self) -> Grader:
        return OriginalGrader(self.TASK_SET, Judge(self.judge))

    def use_judge(self, judge: JudgeChoice) -> None:
        self.judge = JudgeConfig(base_url=judge.base_url, model=judge.model or JudgeConfig.model,
                                 api_key_env=judge.api_key_env)  # fmt: skip
        self.judge.check()
        self.__dict__.pop("grader", None)  # a grader made before asks the judge it was made with


@dataclass
class WebArenaLiteConfig(WebArenaConfig):
    """WebArena-Lite: 165 of the original tasks (by their original ids) with Lite's evaluators and references
    (configs/env/webarena_lite.yaml)."""

    TASK_SET: ClassVar[str] = "webarenalite"
    name: str = "webarena_lite"
