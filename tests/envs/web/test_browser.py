"""The browser layer on real Chromium: the Playwright browsers folder, and pages seen as elements with stable keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("browsergym.core", reason="needs the web extra (pip install -e '.[web]')")

from jitrl_bench.envs.web.browser import chromium_executable, on_browser_thread, playwright_browsers_dir, shared_browser
from jitrl_bench.envs.web.env import candidates_for
from jitrl_bench.envs.web.page import PageView, observe
from jitrl_bench.errors import UserError

try:
    chromium_executable()
except UserError as missing:
    pytest.skip(str(missing), allow_module_level=True)

PAGE = """<html><head><title>Form</title></head><body>
<h1>Sign up</h1>
<label for="n">Name</label><input id="n" type="text">
<select aria-label="Colour"><option>red</option><option>blue</option></select>
<a href="#top">Help</a>
<span onclick="this.textContent='clicked'" style="cursor:pointer">Maybe later</span>
<button>Submit</button>
<button style="display:none">Hidden</button>
</body></html>"""


def test_playwright_browsers_dir(isolated_cache: Path) -> None:
    root = playwright_browsers_dir()
    assert root.is_relative_to(isolated_cache)
    (link,) = root.glob("chromium-*/chrome-linux/chrome")
    assert link.is_symlink() and os.path.realpath(link) == os.path.realpath(chromium_executable())
    assert playwright_browsers_dir() == root  # idempotent


def _view(html: str) -> PageView:
    context = shared_browser().new_context()
    page = context.new_page()
    page.set_content(html)
    view = observe(page)
    context.close()
    return view


def _keys(html: str) -> dict[str, str]:
    view = on_browser_thread(lambda: _view(html))
    assert view.title == "Form"
    for element in view.elements:
        assert f"[{element.bid}] {element.role}" in view.axtree
    keys = [c.key for c in candidates_for(view, 'Sign up as "Ada"')]
    assert {"fill textbox[Name] 'Ada'", "select combobox[Colour] 'blue'", "click button[Submit]"} <= set(keys)
    return {e.key: e.bid for e in view.elements}


def test_elements_and_stable_keys() -> None:
    keys = _keys(PAGE)
    assert {"textbox[Name]", "combobox[Colour]", "link[Help]", "generic[Maybe later]", "button[Submit]"} <= set(keys)
    assert not any("Hidden" in key for key in keys)
    shifted = _keys(PAGE.replace("<h1>Sign up</h1>", "<h1>Sign up</h1><p>News</p><p>More news</p>"))
    assert set(shifted) == set(keys) and shifted != keys  # same keys, different ids


def test_browser_thread_only() -> None:
    with pytest.raises(RuntimeError, match="browser thread"):
        shared_browser()
    assert on_browser_thread(lambda: shared_browser().browser.is_connected())


def test_env_used_from_several_threads() -> None:
    """The runner plays episodes on worker threads and closes envs on the main thread."""
    from concurrent.futures import ThreadPoolExecutor

    from jitrl_bench.envs.web.miniwob import MiniWoBConfig

    env = MiniWoBConfig(tasks="click-button").make("click-button")
    for seed in range(2):
        with ThreadPoolExecutor(1) as pool:  # a fresh thread per episode
            _, info = pool.submit(env.reset, seed=seed).result()
            pool.submit(env.step, info["candidates"][0]).result()
    env.close()


LATE_BUTTON = """<html><head><title>Late</title></head><body>
<button id="b" disabled onclick="this.textContent='clicked'">Go</button>
<script>setTimeout(() => document.getElementById('b').disabled = false, 1000)</script>
</body></html>"""


def test_element_actions_wait_longer_than_browsergyms_500_ms() -> None:
    """A button enabled 1 s after the page loads (as a busy machine renders a real page late) is clicked, not an error.

    Mutant: `ACTION_SET` without `element_timeout` (BrowserGym's own 500 ms) fails with a TimeoutError."""
    from jitrl_bench.contract.web_actions import parse_action
    from jitrl_bench.envs.web.execute import ACTION_SET, ELEMENT_TIMEOUT_MS, run_action

    assert "timeout=500)" not in ACTION_SET.python_includes and ELEMENT_TIMEOUT_MS >= 1500

    def click_late() -> tuple[str, str]:
        context = shared_browser().new_context()
        page = context.new_page()
        page.set_content(LATE_BUTTON)
        (button,) = [e for e in observe(page).elements if e.role == "button"]
        result = run_action(page, parse_action(f"click({button.bid!r})"))
        text = page.inner_text("#b")
        context.close()
        return result.error, text

    assert on_browser_thread(click_late) == ("", "clicked")


STUCK_IN_PYTHON = """
import threading
from jitrl_bench.envs.web.browser import on_browser_thread
from jitrl_bench.errors import InfraError
try:
    on_browser_thread(threading.Event().wait, deadline_s=0.1)  # never returns, and nothing can stop it
except InfraError as error:
    print(error)
"""


def test_a_browser_thread_stuck_for_good_does_not_keep_the_process_alive() -> None:
    """Past every way of freeing it, the caller gets InfraError and the process still exits: the browser thread is a
    daemon. Mutant (tried): the thread from a ThreadPoolExecutor, whose workers are joined at exit: the process never
    ends (the CLI run of tests/envs/web/test_web_guards.py hung that way once its browser thread was stuck)."""
    proc = subprocess.run([sys.executable, "-c", STUCK_IN_PYTHON], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the browser thread is still busy" in proc.stdout
