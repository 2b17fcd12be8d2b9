"""The web envs' guards on real Chromium against local sites: a page in an endless script fails its episode within
the step deadline and frees the browser thread; requests never leave the task's sites (nor do extra headers); a page
with more elements than `env.max_candidates` offers that many candidates and says how many it cut."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.run.spec import load_spec
from tests.envs.web.web_support import require_browser

pytest.importorskip("webarena_verified", reason="needs the web extra: make setup")

from jitrl_bench.envs.web.browser import EXPIRY_GRACE_S, on_browser_thread
from jitrl_bench.envs.web.env import WebEnv
from jitrl_bench.envs.web.webarena.verified import VerifiedConfig
from scripts.webarena_standin import serve

require_browser()

SPIN = "<script>addEventListener('load', () => setTimeout(() => { while (true) {} }, 50))</script>"
TOKEN = "t0ken-for-site-a"


class Site(http.server.BaseHTTPRequestHandler):
    """A local site that records what it was asked; `pages` maps a path to its HTML (or to a redirect target)."""

    hits: ClassVar[list[tuple[str, str, dict[str, str]]]]
    pages: ClassVar[dict[str, str]]
    spins_left: ClassVar[int] = 0

    def _answer(self) -> None:
        self.hits.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        page = self.pages.get(self.path.split("?")[0], "<html><head><title>Other</title></head><body>x</body></html>")
        if self.path == "/spin-once" and type(self).spins_left > 0:  # the first visits hang, later ones do not
            type(self).spins_left -= 1
            page = f"<html><head><title>Spin</title></head><body>{SPIN}</body></html>"
        if page.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", page.removeprefix("redirect:"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _site(pages: dict[str, str]) -> tuple[type[Site], Any, str]:
    handler = type("LocalSite", (Site,), {"hits": [], "pages": pages})
    server = serve(handler, 0)
    return handler, server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def sites() -> Iterator[tuple[type[Site], str, type[Site], str]]:
    """Site A (the task's) links, posts, fetches and redirects to site B (another origin)."""
    b_handler, b_server, b = _site({})
    page_a = (
        "<html><head><title>Site A</title></head><body>"
        f"<a href='{b}/linked'>To B</a> <a href='/redirect'>Redirect</a> <a href='/popup' target='_blank'>Pop</a>"
        f"<form method='post' action='{b}/posted'><input name='q' value='1'><button>Send</button></form>"
        f"<script>fetch('{b}/fetched').catch(() => null)</script></body></html>"
    )
    many = "".join(f"<button>b{i}</button>" for i in range(500))
    a_handler, a_server, a = _site(
        {
            "/": page_a,
            "/redirect": f"redirect:{b}/redirected",
            "/popup": f"<html><body><script>location.href = '{b}/popped'</script></body></html>",
            "/spin": f"<html><head><title>Spin</title></head><body><button>Wait</button>{SPIN}</body></html>",
            "/many": f"<html><head><title>Many</title></head><body>{many}</body></html>",
            "/socket": "<html><head><title>Socket</title></head><body><script>window.refused = [];"
            "addEventListener('securitypolicyviolation', e => refused.push(e.violatedDirective + ' ' + e.blockedURI));"
            f"new WebSocket('{b.replace('http', 'ws')}/ws-foreign');"
            "new WebSocket(location.origin.replace('http', 'ws') + '/ws-own');</script></body></html>",
            "/leaky": f"<html><head><title>Leaky</title></head><body>{many}<script>"
            f"setInterval(() => fetch('{b}/polled').catch(() => null), 50)</script></body></html>",
        }
    )
    yield a_handler, a, b_handler, b
    for server in (a_server, b_server):
        server.shutdown()
        server.server_close()


def make_env(url: str, tmp_path: Path, **kwargs: Any) -> WebEnv:
    """Task 44 (its start page is the site's URL) on a plain local site: no sign-in."""
    return VerifiedConfig(tasks=[44], urls={"gitlab": url}, login="none", har_dir=str(tmp_path), **kwargs).make("44")


def by_key(info: dict[str, Any]) -> dict[str, str]:
    return dict(zip(info["action_keys"], info["candidates"], strict=True))


def test_endless_script_fails_within_the_deadline_and_frees_the_browser(
    sites: tuple[type[Site], str, type[Site], str], tmp_path: Path
) -> None:
    """An episode already in flight on another context of the same browser goes on where it was.

    Mutants (tried): `on_browser_thread` ignoring its deadline: the reset never returns (the thread below is still
    alive after 20 s; the browser thread stays held, so pytest cannot even exit); `interrupt_soon` doing nothing: the
    thread is only freed by the context close one grace later (and, on a machine busy with six spinning processes,
    the reset failed with Playwright's own KeyError instead of the timeout); the deadline closing the whole browser
    instead: the episode in flight fails its next step ("browser failure")."""
    _, a, _, _ = sites
    in_flight = make_env(a, tmp_path)
    _, flight_info = in_flight.reset(seed=0)
    spinning = make_env(f"{a}/spin", tmp_path, step_timeout_s=2.0)
    outcome: list[BaseException | None] = []

    def reset() -> None:
        try:
            spinning.reset(seed=0)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    start = time.perf_counter()
    worker = threading.Thread(target=reset, daemon=True)
    worker.start()
    worker.join(timeout=20)
    took = time.perf_counter() - start
    assert not worker.is_alive(), "the endless script still holds the browser thread"
    assert isinstance(outcome[0], InfraError) and "timed out after 2 s" in str(outcome[0])
    # the deadline, then the script stopped (0.3-0.4 s later, quiet or with two cores fully busy): freed by the first
    # and mildest way, before the context close that follows one grace later
    assert took < 2.0 + EXPIRY_GRACE_S, took
    _, _, terminated, _, _ = in_flight.step(by_key(flight_info)["answer NAVIGATE"])  # its page survived
    assert terminated
    in_flight.close()
    other = make_env(a, tmp_path)  # another env on the same browser thread works afterwards
    obs, info = other.reset(seed=0)
    assert "link 'To B'" in obs
    _, _, terminated, _, info = other.step(by_key(info)["answer NAVIGATE"])
    assert terminated
    other.close()
    spinning.close()


def test_requests_stay_on_the_task_sites_and_headers_with_them(
    sites: tuple[type[Site], str, type[Site], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutants (tried): no `context.route` (B gets the link, form, fetch); no check of a redirect's target (B gets
    /redirected); no `scrub_har` (the HAR keeps Playwright's own fetches, with the token)."""
    a_site, a, b_site, b = sites
    headers = tmp_path / "headers.json"
    headers.write_text(json.dumps({"X-Gateway-Token": TOKEN}))
    monkeypatch.setenv("PW_EXTRA_HEADERS", str(headers))
    env = make_env(a, tmp_path)
    _, info = env.reset(seed=0)
    blocked = list(info["blocked_requests"])
    for key in ("click link[To B]", "click button[Send]", "click link[Redirect]", "click link[Pop]"):
        _, _, _, _, info = env.step(by_key(info)[key])
        assert info["url"] == f"{a}/", (key, info["url"])  # a blocked navigation leaves the agent where it was
        blocked += info["blocked_requests"]
    time.sleep(0.5)  # the popup's script runs after its page opened
    _, _, _, _, info = env.step("noop(100)")
    blocked += info["blocked_requests"]
    _, _, terminated, _, info = env.step(by_key(info)["answer NAVIGATE"])
    assert terminated
    paths = {url.removeprefix(b) for url in blocked}
    assert {"/fetched", "/linked", "/posted", "/redirected", "/popped"} <= paths, blocked
    assert b_site.hits == []  # site B received nothing
    routed = [h for h in a_site.hits if h[1] != "/favicon.ico"]  # Chromium fetches favicons outside any route
    assert routed and all(h[2].get("x-gateway-token") == TOKEN for h in routed)
    env.close()
    recorded = Path(info["artifacts"]["har"]).read_text()
    assert TOKEN not in recorded and "X-Gateway-Token" not in recorded
    urls = [e["request"]["url"] for e in json.loads(recorded)["log"]["entries"]]
    assert urls and all(url.startswith(a) for url in urls)  # no entry for a blocked request
    assert f"{a}/redirect" in urls  # the sites' own requests are kept for the grader


def test_websockets_reach_only_the_task_sites(sites: tuple[type[Site], str, type[Site], str], tmp_path: Path) -> None:
    """Playwright does not route WebSockets, so the guard's Content-Security-Policy has the browser refuse them: the
    browser's own report (`securitypolicyviolation`) names the socket to site B under connect-src, and not the one to
    the page's own site. (Neither reaches a loopback server here anyway: Chromium's local-network checks stop sockets
    from a fulfilled page to 127.0.0.1, which is why the browser's report is the evidence and not B's log.)
    Mutant (tried): responses fulfilled without the policy: nothing is refused."""
    _, a, _, b = sites
    env = make_env(f"{a}/socket", tmp_path)
    env.reset(seed=0)
    assert env.page is not None
    page = env.page
    refused = on_browser_thread(lambda: page.evaluate("window.refused"))
    env.close()
    foreign = b.replace("http", "ws") + "/ws-foreign"
    assert [r.split()[0] for r in refused] == ["connect-src"] and foreign in refused[0], refused


def test_miniwob_loads_its_own_files_and_nothing_else(sites: tuple[type[Site], str, type[Site], str]) -> None:
    """Mutant (tried): `SitePolicy.allows` letting every file:// URL through (the /etc file loads). Allowing only
    the task's own folder fails the reset (its page loads ../core/*.js)."""
    import playwright.sync_api as pw

    from jitrl_bench.envs.web.miniwob import MiniWoBConfig

    _, a, _, _ = sites
    env = MiniWoBConfig(tasks="click-button").make("click-button")
    _, info = env.reset(seed=0)
    assert info["blocked_requests"] == [] and info["goal"]

    def leave(url: str) -> str:
        assert env.page is not None
        try:
            env.page.goto(url)
        except pw.Error as error:
            return str(error).splitlines()[0]
        return "loaded"

    for url in ("file:///etc/hostname", f"{a}/"):
        assert "ERR_ABORTED" in on_browser_thread(functools.partial(leave, url))
    _, _, _, _, info = env.step("noop(10)")
    assert info["blocked_requests"] == ["file:///etc/hostname", f"{a}/"]
    env.close()


def test_candidates_are_capped_in_page_order(sites: tuple[type[Site], str, type[Site], str], tmp_path: Path) -> None:
    """Mutant (tried): the env passing no limit to `offer` (502 candidates, 0 cut)."""
    _, a, _, _ = sites
    env = make_env(f"{a}/many", tmp_path, max_candidates=100)
    _, info = env.reset(seed=0)
    keys = set(info["action_keys"])
    assert len(keys) == 102 and {"answer NAVIGATE", "answer MUTATE"} <= keys  # the answers are always offered
    assert {f"click button[b{i}]" for i in range(100)} <= keys and info["candidates_cut"] == 400
    env.close()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("env.step_timeout_s=0", r"env\.step_timeout_s=0(\.0)?: must be in \[1, 3600\]"),
        ("env.max_candidates=0", r"env\.max_candidates=0: must be >= 1"),
    ],
)
def test_limits_are_checked(override: str, message: str) -> None:
    for env in ("miniwob", "webarena_verified"):
        with pytest.raises(UserError, match=message):
            load_spec([f"env={env}", override])


@pytest.mark.slow  # a CLI process (about a minute on 2 busy cores); the env-level test above runs in the fast suite
def test_cli_run_records_the_stuck_episode_as_an_error_and_goes_on(
    sites: tuple[type[Site], str, type[Site], str], tmp_path: Path
) -> None:
    """`jitrl-bench run`: the first visit of the start page spins forever; that episode is an infrastructure error
    row (run.infra_retries=0), the other one is played. Mutant: no watchdog: the run never ends (timeout)."""
    from tests.processes import rows_of, start

    a_site, a, _, _ = sites
    a_site.spins_left = 1
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "jitrl_bench", "run", "env=webarena_verified", "env.tasks=[44]",
               f"env.urls.gitlab={a}/spin-once", "env.login=none", "env.step_timeout_s=5", "policy=uniform",
               "agent=static", "run.episodes=2", "run.max_steps=2", "run.infra_retries=0", "run.progress=false",
               f"run.dir={run_dir}"]  # fmt: skip
    proc = start(command)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the run did not end: {err[-3000:]}") from None
    rows = rows_of(run_dir)
    assert sorted(r["status"] for r in rows) == ["error", "ok"], err[-2000:]
    (error,) = [r for r in rows if r["status"] == "error"]
    assert "timed out after 5 s" in error["error"]


@pytest.mark.slow  # a CLI process, like the test above
def test_cli_run_records_blocked_requests_and_cut_candidates_in_its_steps(
    sites: tuple[type[Site], str, type[Site], str], tmp_path: Path
) -> None:
    """`jitrl-bench run` on a page of 500 buttons that polls another origin every 50 ms: every step in steps.jsonl
    names the guard's blocked requests and the candidates cut by `env.max_candidates`, and site B hears nothing.
    Mutants: the episode loop not copying `view.blocked` / `view.candidates_cut` into the step record (empty lists,
    zeros); a guard that lets the poll through (B's hits)."""
    _, a, b_site, b = sites
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "jitrl_bench", "run", "env=webarena_verified", "env.tasks=[44]",
               f"env.urls.gitlab={a}/leaky", "env.login=none", "env.max_candidates=10", "policy=uniform",
               "agent=static", "run.episodes=1", "run.max_steps=2", "run.progress=false",
               f"run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (steps_file,) = (run_dir / "steps").rglob("*.jsonl")
    steps = [json.loads(line) for line in steps_file.read_text().splitlines()]
    assert steps
    for step in steps:
        assert step["candidates_cut"] >= 490, step["candidates_cut"]
        assert step["blocked_requests"] and all(u.startswith(f"{b}/polled") for u in step["blocked_requests"])
    assert b_site.hits == []
