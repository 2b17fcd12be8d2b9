"""WebArena-Verified end to end against the local stand-in for GitLab (scripts/webarena_standin.py; task 44: "Open my
todos page"): real Chromium, a real sign-in form, a real HAR, webarena-verified's own evaluator, the reset protocol.
Live WebArena only if $WA_GITLAB answers."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from jitrl_bench.config import compose_config
from jitrl_bench.errors import UserError
from jitrl_bench.run.spec import load_spec
from tests.envs.test_contract import check_step, rollout
from tests.envs.web.web_support import require_browser

pytest.importorskip("webarena_verified", reason="needs the web extra: make setup")

from jitrl_bench.contract import Lease
from jitrl_bench.envs.web.env import WebEnv
from jitrl_bench.envs.web.webarena.episode import TaskDef, ordered
from jitrl_bench.envs.web.webarena.sites import Instance, InstancePool, ResetPolicy, reset_instance
from jitrl_bench.envs.web.webarena.verified import InfraError, VerifiedConfig, grade
from jitrl_bench.leases import LeaseBook
from scripts.webarena_standin import GitLabStandIn, ResetServer

require_browser()
pytestmark = pytest.mark.usefixtures("gitlab_account")
NAVIGATED = json.dumps({"task_type": "NAVIGATE", "status": "SUCCESS", "retrieved_data": None})
RETRIEVED = json.dumps({"task_type": "RETRIEVE", "status": "SUCCESS", "retrieved_data": ["todos"]})


@pytest.fixture
def sites(standin_sites: dict[str, str]) -> dict[str, str]:
    return standin_sites


def config(sites: dict[str, str], tmp_path: Path, **kwargs: Any) -> VerifiedConfig:
    return VerifiedConfig(tasks=[44], urls={"gitlab": sites["gitlab"]}, har_dir=str(tmp_path), **kwargs)


def make_env(sites: dict[str, str], tmp_path: Path, **kwargs: Any) -> WebEnv:
    return config(sites, tmp_path, **kwargs).make("44")


def play(env: WebEnv, keys: list[str], answer: str) -> dict[str, Any]:
    obs, info = env.reset(seed=0)
    assert info["goal"] == "Open my todos page" and "link 'To-Do List'" in obs  # signed in: the dashboard shows
    for key in keys:
        score = info["score"]
        by_key = dict(zip(info["action_keys"], info["candidates"], strict=True))
        obs, reward, terminated, truncated, info = env.step(by_key[key])
        check_step(env, obs, reward, terminated, truncated, info, score)
        assert not terminated and info["last_action_error"] == ""
    score = info["score"]
    obs, reward, terminated, truncated, info = env.step(f"answer({answer!r})")
    check_step(env, obs, reward, terminated, truncated, info, score)
    assert terminated and info["artifacts"]["answer"] == answer
    return info


def test_task44_graded_from_har(sites: dict[str, str], tmp_path: Path) -> None:
    env = make_env(sites, tmp_path)
    info = play(env, ["click link[To-Do List]"], NAVIGATED)
    assert info["won"] and info["score"] == 1.0
    har = Path(info["artifacts"]["har"])
    assert har.parent == tmp_path and har.stat().st_size > 0
    recorded = har.read_text()
    assert "/dashboard/todos" in recorded and "/users/sign_in" not in recorded  # login happened outside the HAR
    urls = {"gitlab": sites["gitlab"]}
    assert grade(44, NAVIGATED, har, urls) == 1.0
    assert grade(44, NAVIGATED, har, urls) == 1.0  # re-grading the same files gives the same grade
    assert grade(44, RETRIEVED, har, urls) == 0.0  # wrong answer type
    assert grade(44, "the todos page is open", har, urls) == 0.0  # not the answer format
    assert info["artifacts"] == {"task_id": 44, "answer": NAVIGATED, "har": str(har), "urls": urls,
                                 "final_url": f"{sites['gitlab']}/dashboard/todos", "instance": 0}  # fmt: skip
    env.close()


def test_wrong_page_graded_zero(sites: dict[str, str], tmp_path: Path) -> None:
    env = make_env(sites, tmp_path)
    info = play(env, ["click link[Issues]"], NAVIGATED)
    assert info["lost"] and info["score"] == 0.0
    assert grade(44, NAVIGATED, info["artifacts"]["har"], {"gitlab": sites["gitlab"]}) == 0.0
    env.close()


def test_grade_later_and_regrade(sites: dict[str, str], tmp_path: Path) -> None:
    """grade_on_end=false: the episode ends unscored; the config re-grades it from its artifacts alone."""
    cfg = config(sites, tmp_path, grade_on_end=False)
    env = cfg.make("44")
    info = play(env, ["click link[To-Do List]"], NAVIGATED)
    assert info["score"] == 0.0 and info["lost"]
    assert cfg.regrade(info["artifacts"]) == 1.0
    assert VerifiedConfig().regrade({**info["artifacts"], "answer": RETRIEVED}) == 0.0
    env.close()


def test_out_of_steps_is_graded_without_an_answer(sites: dict[str, str], tmp_path: Path) -> None:
    env = make_env(sites, tmp_path)
    _, info = env.reset(seed=0)
    env.step(dict(zip(info["action_keys"], info["candidates"], strict=True))["click link[To-Do List]"])
    view = env.end_episode()
    assert view.lost and view.score == 0.0 and view.artifacts["answer"] is None
    assert Path(view.artifacts["har"]).stat().st_size > 0  # the recording was closed and kept
    env.close()


def test_random_rollout_keeps_the_contract(sites: dict[str, str], tmp_path: Path) -> None:
    """check_env_adapter minus determinism of info: each episode records a new HAR path by design."""
    env = make_env(sites, tmp_path)
    for seed in range(3):
        rollout(env, seed)
    env.close()


def test_goto_limited_to_task_sites(sites: dict[str, str], tmp_path: Path) -> None:
    env = make_env(sites, tmp_path)
    env.reset(seed=0)
    _, _, _, _, info = env.step(f"goto('{sites['gitlab']}/dashboard/todos')")
    assert info["last_action_error"] == "" and info["url"] == f"{sites['gitlab']}/dashboard/todos"
    _, _, _, _, info = env.step("goto('file:///etc/hostname')")
    assert info["last_action_error"].startswith("invalid action") and info["url"].endswith("/dashboard/todos")
    env.close()


def test_infra_errors(sites: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="502"):
        make_env({"gitlab": f"{sites['gitlab']}/boom"}, tmp_path, login="none").reset(seed=0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(InfraError, match="ERR_CONNECTION_REFUSED"):
        make_env({"gitlab": f"http://127.0.0.1:{closed}"}, tmp_path).reset(seed=0)
    env = make_env(sites, tmp_path)
    _, info = env.reset(seed=0)
    with pytest.raises(InfraError, match="502"):
        env.step(dict(zip(info["action_keys"], info["candidates"], strict=True))["click link[Broken]"])
    env.close()
    with pytest.raises(InfraError):
        grade(44, NAVIGATED, tmp_path / "missing.har", {"gitlab": sites["gitlab"]})


def test_login_reused_refused_and_renewed(
    sites: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(sites, tmp_path)
    env = cfg.make("44")
    before = GitLabStandIn.sign_ins
    env.reset(seed=0)
    env.reset(seed=1)
    assert GitLabStandIn.sign_ins == before + 1  # one sign-in serves both episodes
    GitLabStandIn.sessions.clear()  # the site forgets every session (an expired login)
    with pytest.raises(InfraError, match="login page"):
        env.reset(seed=2)
    _, info = env.reset(seed=2)  # the runner's retry: signs in again
    assert GitLabStandIn.sign_ins == before + 2 and "link 'To-Do List'" in info["state"]["observation"]
    env.close()
    monkeypatch.setenv("WA_GITLAB_PASSWORD", "wrong")
    with pytest.raises(InfraError, match="still on the login form"):
        make_env(sites, tmp_path).reset(seed=0)
    monkeypatch.delenv("WA_GITLAB_PASSWORD")
    with pytest.raises(UserError, match="WA_GITLAB_PASSWORD"):
        make_env(sites, tmp_path).reset(seed=0)


@pytest.mark.slow
def test_reset_before_each_task(sites: dict[str, str], tmp_path: Path) -> None:
    instances = [{"gitlab": sites["gitlab"], "reset": sites["reset"]}]
    env = make_env(sites, tmp_path, instances=instances, reset="task")
    before = ResetServer.resets
    play(env, ["click link[To-Do List]"], NAVIGATED)
    _, info = env.reset(seed=1)  # same task on the same copy: no second reset
    assert ResetServer.resets == before + 1 and info["artifacts"]["urls"] == {"gitlab": sites["gitlab"]}
    env.close()
    with pytest.raises(UserError, match="WA_FULL_RESET"):
        reset_instance(Instance(0, {}), ResetPolicy("run"))
    with pytest.raises(UserError, match=r"env\.reset="):
        ResetPolicy("always")


def test_instances_hold_one_episode_each() -> None:
    """Four threads, two copies: never two episodes on one copy at once; mode=run resets each copy once."""
    resets: list[int] = []
    pool = InstancePool(
        [Instance(0, {"gitlab": "a"}), Instance(1, {"gitlab": "b"})],
        ResetPolicy("run"),
        resetter=lambda instance, policy: resets.append(instance.index),
    )
    busy: dict[int, int] = {0: 0, 1: 0}
    overlaps: list[int] = []
    lock = threading.Lock()

    def episode(n: int) -> None:
        instance = pool.acquire(f"task{n % 3}")
        with lock:
            busy[instance.index] += 1
            if busy[instance.index] > 1:
                overlaps.append(instance.index)
        time.sleep(0.01)
        with lock:
            busy[instance.index] -= 1
        pool.release(instance)

    threads = [threading.Thread(target=lambda i=i: [episode(i * 10 + j) for j in range(10)]) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [] and sorted(resets) == [0, 1]


def test_a_shared_book_leases_each_copy_once_and_resets_what_a_lost_holder_left() -> None:
    """Two pools leasing from one book (two Ray workers): a copy held by one is not given to the other; a reset by one
    signs the other out of that copy; a lost holder's copy comes back and is reset before its next episode."""
    book = LeaseBook(1, "task")
    resets: list[tuple[str, int]] = []
    forgotten: list[tuple[str, int]] = []

    def pool(name: str) -> InstancePool:
        made = InstancePool([Instance(0, {"gitlab": "a"})], ResetPolicy("task"),
                            resetter=lambda instance, policy: resets.append((name, instance.index)),
                            on_reset=lambda instance: forgotten.append((name, instance.index)))  # fmt: skip
        made.lease_from(book, name)
        return made

    first, second = pool("w0"), pool("w1")
    held = first.acquire("44")
    got: list[Instance] = []
    waiter = threading.Thread(target=lambda: got.append(second.acquire("44")))
    waiter.start()
    time.sleep(0.3)
    assert got == [] and resets == [("w0", 0)] and forgotten == [("w0", 0)]  # w1 waits for the one copy
    first.release(held)
    waiter.join(timeout=5)
    assert got == [held] and resets == [("w0", 0)]  # same task on the copy: no second reset,
    assert forgotten == [("w0", 0), ("w1", 0)]  # but w1 had not seen the first one: its sign-ins are gone
    assert book.drop("w1") == [0]  # w1 died holding it
    first.acquire("44")
    assert resets == [("w0", 0), ("w0", 0)]  # what the lost episode left is reset away
    never = LeaseBook(2, "none")
    assert [never.take("44", "w0"), never.take("44", "w1"), never.take("44", "w2")] == [
        Lease(0, False, 0), Lease(1, False, 0), None]  # fmt: skip
    prefer = LeaseBook(2, "task")
    for index, task in ((0, "44"), (1, "45")):
        assert prefer.take(task, "w0") == Lease(index, True, 1)
        prefer.ready(index, task)
        prefer.give_back(index)
    assert prefer.take("45", "w1") == Lease(1, False, 1)  # the copy that last ran task 45: no reset needed


def test_dependency_order() -> None:
    tasks = [
        TaskDef(3, "c", ("gitlab",), "", (1,)),
        TaskDef(1, "a", ("gitlab",), "", (5,)),
        TaskDef(2, "b", ("gitlab",), ""),
    ]
    assert [t.task_id for t in ordered(tasks)] == [1, 2, 3]
    cycle = [TaskDef(1, "a", (), "", (2,)), TaskDef(2, "b", (), "", (1,))]
    assert sorted(t.task_id for t in ordered(cycle)) == [1, 2]


def test_config(tmp_path: Path) -> None:
    spec = load_spec(["env=webarena_verified"])
    assert isinstance(spec.env, VerifiedConfig) and spec.env.task_names() == ["44"] and spec.run.max_steps == 30
    assert compose_config(["env=webarena_verified", "run.max_steps=5"]).run.max_steps == 5
    gitlab_hard = VerifiedConfig(sites=["gitlab"], subset="hard").task_names()
    assert 0 < len(gitlab_hard) < len(VerifiedConfig(sites=["gitlab"]).task_names()) < 812
    assert len(VerifiedConfig(tasks=[]).task_names()) == 812
    for bad, message in (
        (["env.tasks=[9999]"], "env.tasks=[9999]: unknown webarena_verified task id(s): 9999"),
        (["env.sites=[gitlabz]"], "env.sites=gitlabz: each must be one of shopping"),
        (["env.tasks=[forty]"], "task ids are integers"),
        (["env.login=sso"], "env.login=sso: choose one of ui, header, none"),
        (["env.subset=easy"], "env.subset=easy: choose one of all, hard, non-hard"),
        (["env.oracle_stop=true"], "env.oracle_stop=True: webarena_verified+oracle-stop grades offline"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            load_spec(["env=webarena_verified", *bad])  # refused when composed, before any browser starts
    if not os.environ.get("WA_GITLAB"):
        with pytest.raises(UserError, match="WA_GITLAB"):
            VerifiedConfig(tasks=[44], urls={}).make("44")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status < 500)
    except Exception:
        return False


@pytest.mark.skipif(not (os.environ.get("WA_GITLAB") and _answers(os.environ["WA_GITLAB"])), reason="no live WebArena")
def test_live_gitlab_task44(tmp_path: Path) -> None:
    env = VerifiedConfig(tasks=[44], har_dir=str(tmp_path)).make("44")
    obs, info = env.reset(seed=0)
    assert obs and info["candidates"] and Path(info["artifacts"]["har"]).parent == tmp_path
    env.close()


def test_doctor_checks_each_site_and_login(sites: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from jitrl_bench.envs.web.webarena.needs import webarena_requirements

    for var in ("WA_SHOPPING", "WA_SHOPPING_ADMIN", "WA_REDDIT", "WA_MAP", "WA_WIKIPEDIA", "WA_HOMEPAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WA_GITLAB", sites["gitlab"])
    monkeypatch.setenv("WA_FULL_RESET", sites["reset"])
    rows = {row.part: row for row in webarena_requirements()}
    assert rows["WA_GITLAB"].ok and rows["gitlab login"].ok and rows["WA_FULL_RESET"].ok
    monkeypatch.setenv("WA_GITLAB_PASSWORD", "wrong")
    rows = {row.part: row for row in webarena_requirements()}
    assert rows["WA_GITLAB"].ok and not rows["gitlab login"].ok and "WA_GITLAB_PASSWORD" in rows["gitlab login"].fix


def test_extra_headers_reach_the_sites(sites: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = tmp_path / "headers.json"
    headers.write_text(json.dumps({"X-Gateway-Token": "t0ken"}))
    monkeypatch.setenv("PW_EXTRA_HEADERS", str(headers))
    env = make_env(sites, tmp_path / "har")
    info = play(env, ["click link[To-Do List]"], NAVIGATED)
    recorded = Path(info["artifacts"]["har"]).read_text()  # graded from the HAR, which keeps no header value
    assert info["won"] and "X-Gateway-Token" not in recorded and "t0ken" not in recorded
    env.close()
    headers.write_text("not json")
    with pytest.raises(UserError, match="PW_EXTRA_HEADERS"):
        make_env(sites, tmp_path / "har").reset(seed=0)


def test_browser_crash_is_an_infrastructure_error(sites: dict[str, str], tmp_path: Path) -> None:
    from jitrl_bench.envs.web.browser import on_browser_thread, shared_browser

    env = make_env(sites, tmp_path)
    _, info = env.reset(seed=0)
    on_browser_thread(lambda: shared_browser().browser.close())  # Chromium gone mid-episode
    with pytest.raises(InfraError, match="browser failure"):
        env.step(dict(zip(info["action_keys"], info["candidates"], strict=True))["click link[To-Do List]"])
    info = play(env, ["click link[To-Do List]"], NAVIGATED)  # the retry gets a fresh browser
    assert info["won"]
    env.close()


def test_shopping_task163_signed_in_and_graded(
    sites: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retrieval task on the shopping stand-in: Magento's customer login form, the product page, the answer graded."""
    from scripts.webarena_standin import SHOPPER, SHOPPER_PASSWORD

    monkeypatch.setenv("WA_SHOPPING_USERNAME", SHOPPER)
    monkeypatch.setenv("WA_SHOPPING_PASSWORD", SHOPPER_PASSWORD)
    cfg = VerifiedConfig(tasks=[163], urls={"shopping": sites["shopping"]}, har_dir=str(tmp_path))
    env = cfg.make("163")
    answers = {
        json.dumps({"task_type": "RETRIEVE", "status": "SUCCESS", "retrieved_data": titles}): score
        for titles, score in ((["Memory Card Came Defective"], 1.0), (["Too slow for me"], 0.0))
    }
    for answer, score in answers.items():
        obs, info = env.reset(seed=0)
        assert "Welcome, Emma Lopez!" in obs and "Memory Card Came Defective" in obs  # signed in, on the product
        _, _, terminated, _, info = env.step(f"answer({answer!r})")
        assert terminated and info["score"] == score
        assert cfg.regrade(info["artifacts"]) == score
    env.close()


def test_prompt_of_a_webarena_page_shows_goal_labels_and_fits(sites: dict[str, str], tmp_path: Path) -> None:
    """What the model reads on the stand-in GitLab dashboard: the goal, the URL, labelled candidates, the answer
    format; its retrieval state holds the goal and the URL by site name; a small window cuts the page, not the rest."""
    from jitrl_bench.policies.tokens import ChatTokens

    env = make_env(sites, tmp_path)
    env.reset(seed=0)
    view = env.view()
    assert view.state["goal"] == "Open my todos page" and view.state["url"].startswith("gitlab")
    todo = next(c for c in view.candidates if c.key == "click link[To-Do List]")
    assert todo.label == "click link 'To-Do List'" and re.fullmatch(r"click\('\w+'\)", todo.action)
    for budget in (4096, 300):
        window = ChatTokens("smollm2", max_prompt_tokens=budget)
        rendered = view.layout.render(view, [], window)
        text = rendered.prompt.text()
        assert "Goal: Open my todos page" in text and f"URL: {view.url}" in text
        assert f"{todo.action}  # {todo.label}" in text and '"task_type"' in text  # WebArena-Verified's answer format
        assert len(window.prompt_ids(rendered.prompt)) <= budget
    assert any(c.part == "page" for c in rendered.cuts)  # 300 tokens: the page was cut, and the trace will say so
    env.close()
