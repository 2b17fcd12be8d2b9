"""WebArena-Verified end to end against a small local stand-in for GitLab on 127.0.0.1:8023 (task 44: "Open my
todos page"): real Chromium, a real HAR, webarena-verified's own evaluator. Live WebArena only if $WA_GITLAB answers."""

from __future__ import annotations

import errno
import http.server
import json
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jitrl_bench.errors import UserError
from jitrl_bench.paths import CONFIG_DIR
from tests.envs.test_contract import check_step, rollout

pytest.importorskip("browsergym.core", reason="needs the web extra (pip install -e '.[web]')")
pytest.importorskip("webarena_verified", reason="needs the web extra (pip install -e '.[web]')")

from jitrl_bench.envs.browser import chromium_executable
from jitrl_bench.envs.web import WebEnv
from jitrl_bench.envs.webarena import InfraError, WebArenaConfig, grade

try:
    chromium_executable()
except UserError as missing:
    pytest.skip(str(missing), allow_module_level=True)

HOST, PORT = "127.0.0.1", 8023
SITE = f"http://{HOST}:{PORT}"
NAVIGATED = json.dumps({"task_type": "NAVIGATE", "status": "SUCCESS", "retrieved_data": None})
RETRIEVED = json.dumps({"task_type": "RETRIEVE", "status": "SUCCESS", "retrieved_data": ["todos"]})

NAV = (
    "<nav><a href='/dashboard/projects'>Projects</a> <a href='/dashboard/issues'>Issues</a> "
    "<a href='/dashboard/todos'>To-Do List</a> <a href='/broken'>Broken</a></nav>"
)
PAGES = {
    "/": ("Dashboard · GitLab", "<h1>Welcome to GitLab</h1><input aria-label='Search GitLab' type='search'>"),
    "/dashboard/projects": ("Projects · Dashboard · GitLab", "<h1>Projects</h1><a href='/a11yproject'>a11yproject</a>"),
    "/dashboard/issues": ("Issues · Dashboard · GitLab", "<h1>Issues</h1><p>No issues.</p>"),
    "/dashboard/todos": ("To-Do List · GitLab", "<h1>To-Do List</h1><ul><li>Review merge request !12</li></ul>"),
}


class GitLabStandIn(http.server.BaseHTTPRequestHandler):
    """The GitLab pages task 44 needs; /broken and /boom answer 502 (a site having a bad day)."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith(("/broken", "/boom")):
            self._send(502, "<h1>502 Bad Gateway</h1>")
        elif path in PAGES:
            title, body = PAGES[path]
            self._send(200, f"<html><head><title>{title}</title></head><body>{NAV}{body}</body></html>")
        else:
            self._send(404, "<h1>404</h1>")

    def _send(self, status: int, html: str) -> None:
        data = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def gitlab() -> Iterator[str]:
    try:
        server = http.server.ThreadingHTTPServer((HOST, PORT), GitLabStandIn)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            pytest.skip(f"port {PORT} is taken (a real GitLab?): the local stand-in needs it")
        raise
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SITE
    server.shutdown()
    server.server_close()


def make_env(site: str, har_dir: Path, **kwargs: Any) -> WebEnv:
    config = WebArenaConfig(task=[44], urls={"gitlab": site}, har_dir=str(har_dir), **kwargs)
    return config.make(config.tasks()[0])


def play(env: WebEnv, keys: list[str], answer: str) -> dict[str, Any]:
    obs, info = env.reset(seed=0)
    assert info["goal"] == "Open my todos page" and "link 'To-Do List'" in obs
    for key in keys:
        score = info["score"]
        by_key = dict(zip(info["action_keys"], info["candidates"], strict=True))
        obs, reward, terminated, truncated, info = env.step(by_key[key])
        check_step(env, obs, reward, terminated, truncated, info, score)
        assert not terminated and info["last_action_error"] == ""
    score = info["score"]
    obs, reward, terminated, truncated, info = env.step(f"answer({answer!r})")
    check_step(env, obs, reward, terminated, truncated, info, score)
    assert terminated and info["answer"] == answer
    return info


def test_task44_graded_from_har(gitlab: str, tmp_path: Path) -> None:
    env = make_env(gitlab, tmp_path)
    info = play(env, ["click link[To-Do List]"], NAVIGATED)
    assert info["won"] and info["score"] == 1.0
    har = Path(info["har"])
    assert har.parent == tmp_path and har.stat().st_size > 0
    assert "/dashboard/todos" in har.read_text()
    urls = {"gitlab": gitlab}
    assert grade(44, NAVIGATED, har, urls) == 1.0
    assert grade(44, NAVIGATED, har, urls) == 1.0  # re-grading the same files gives the same grade
    assert grade(44, RETRIEVED, har, urls) == 0.0  # wrong answer type
    assert grade(44, "the todos page is open", har, urls) == 0.0  # not the answer format
    env.close()


def test_wrong_page_graded_zero(gitlab: str, tmp_path: Path) -> None:
    env = make_env(gitlab, tmp_path)
    info = play(env, ["click link[Issues]"], NAVIGATED)
    assert info["lost"] and info["score"] == 0.0
    assert grade(44, NAVIGATED, info["har"], {"gitlab": gitlab}) == 0.0
    env.close()


def test_grade_later(gitlab: str, tmp_path: Path) -> None:
    """grade_on_end=false: the episode ends unscored, and the HAR grades afterwards."""
    env = make_env(gitlab, tmp_path, grade_on_end=False)
    info = play(env, ["click link[To-Do List]"], NAVIGATED)
    assert info["score"] == 0.0 and info["lost"]
    assert grade(44, info["answer"], info["har"], {"gitlab": gitlab}) == 1.0
    env.close()


def test_random_rollout_keeps_the_contract(gitlab: str, tmp_path: Path) -> None:
    """check_env_adapter minus determinism of info: each episode's HAR path is new by design (info["har"])."""
    env = make_env(gitlab, tmp_path)
    for seed in range(3):
        rollout(env, seed)
    env.close()


def test_goto_limited_to_task_sites(gitlab: str, tmp_path: Path) -> None:
    env = make_env(gitlab, tmp_path)
    env.reset(seed=0)
    _, _, _, _, info = env.step(f"goto('{gitlab}/dashboard/todos')")
    assert info["last_action_error"] == "" and info["url"] == f"{gitlab}/dashboard/todos"
    _, _, _, _, info = env.step("goto('file:///etc/hostname')")
    assert info["last_action_error"].startswith("invalid action") and info["url"] == f"{gitlab}/dashboard/todos"
    env.close()


def test_infra_errors(gitlab: str, tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="502"):
        make_env(f"{gitlab}/boom", tmp_path).reset(seed=0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind((HOST, 0))
        closed = probe.getsockname()[1]
    with pytest.raises(InfraError, match="ERR_CONNECTION_REFUSED"):
        make_env(f"http://{HOST}:{closed}", tmp_path).reset(seed=0)
    env = make_env(gitlab, tmp_path)
    _, info = env.reset(seed=0)
    with pytest.raises(InfraError, match="502"):
        env.step(dict(zip(info["action_keys"], info["candidates"], strict=True))["click link[Broken]"])
    env.close()
    with pytest.raises(InfraError):
        grade(44, NAVIGATED, tmp_path / "missing.har", {"gitlab": gitlab})


def test_config(tmp_path: Path) -> None:
    conf = OmegaConf.load(CONFIG_DIR / "env" / "webarena_verified.yaml")
    config = instantiate(conf)
    assert isinstance(config, WebArenaConfig) and config.tasks() == ["44"]
    gitlab_hard = WebArenaConfig(sites=["gitlab"], subset="hard").tasks()
    assert 0 < len(gitlab_hard) < len(WebArenaConfig(sites=["gitlab"]).tasks()) < 812
    assert len(WebArenaConfig(task=[]).tasks()) == 812
    with pytest.raises(UserError):
        WebArenaConfig(task=[9999]).tasks()
    with pytest.raises(UserError):
        WebArenaConfig(sites=["gitlabz"]).tasks()
    with pytest.raises(UserError):
        WebArenaConfig(task=[44], urls={}).make("44") if not os.environ.get("WA_GITLAB") else pytest.skip(
            "WA_GITLAB set"
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status < 500)
    except Exception:
        return False


@pytest.mark.skipif(not (os.environ.get("WA_GITLAB") and _answers(os.environ["WA_GITLAB"])), reason="no live WebArena")
def test_live_gitlab_task44(tmp_path: Path) -> None:
    env = WebArenaConfig(task=[44], har_dir=str(tmp_path)).make("44")
    obs, info = env.reset(seed=0)
    assert obs and info["candidates"] and Path(info["har"]).parent == tmp_path
    env.close()
