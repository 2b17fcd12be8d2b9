"""The browser layer shared by the web envs: one headless Chromium per process, and the one thread that drives it.

Playwright drives the system's Chromium (Debian's `chromium` package): browsergym-core pins Playwright 1.44, whose own
browser build (chromium-1117) is never downloaded here. We launch the system binary by path, and also lay out a
`pw-browsers/chromium-1117` folder in the jitrl-bench cache that points at it (`PLAYWRIGHT_BROWSERS_PATH`), so any
BrowserGym code that launches Chromium by itself finds the same binary.

Playwright's sync objects belong to the thread that made them, so all browser work runs on one dedicated thread
(`on_browser_thread`); envs can then be used from the runner's worker threads and closed from the main thread. How a
page is read is `page.py`'s; how an action runs on it, `execute.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitedTooLong
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

import playwright.sync_api as pw
from browsergym.core.constants import BROWSERGYM_ID_ATTRIBUTE

from jitrl_bench.contract import Requirement
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.paths import cache_dir

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
"""The real binary first: Debian's /usr/bin/chromium is a shell wrapper that only adds flags we set ourselves."""

CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)

EXPIRY_GRACE_S = 3.0  # after a deadline: how long each way of freeing the browser thread gets (see on_browser_thread)
ACTION_TIMEOUT_MS = 5000  # navigation/wait budget of one action


def chromium_executable() -> str:
    """`$JITRL_BENCH_CHROMIUM`, else the first system Chromium found; a UserError says how to install one."""
    configured = os.environ.get("JITRL_BENCH_CHROMIUM")
    for path in ([configured] if configured else []) + list(CHROMIUM_CANDIDATES):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    raise UserError("Chromium not found: install it (apt-get install -y chromium) or set $JITRL_BENCH_CHROMIUM")


def chromium_requirement() -> Requirement:
    """The browser every web env drives: the binary `chromium_executable` launches."""
    try:
        found, ok = chromium_executable(), True
    except UserError as e:
        found, ok = str(e), False
    return Requirement("chromium (web envs)", ok, found, "apt-get install -y chromium (make setup does)")


def playwright_browsers_dir() -> Path:
    """A `PLAYWRIGHT_BROWSERS_PATH` folder whose chromium-<revision>/chrome-linux/chrome links to the system Chromium.

    The revision is read from the installed Playwright's browsers.json (1117 for 1.44), so the folder follows upgrades.
    """
    spec = find_spec("playwright")
    locations = list(spec.submodule_search_locations or []) if spec else []
    revision = "1117"
    if locations:
        browsers = Path(locations[0], "driver", "package", "browsers.json")
        if browsers.is_file():
            entries = json.loads(browsers.read_text())["browsers"]
            revision = next((str(e["revision"]) for e in entries if e["name"] == "chromium"), revision)
    root = cache_dir("pw-browsers")
    link = root / f"chromium-{revision}" / "chrome-linux" / "chrome"
    target = chromium_executable()
    if not (link.is_symlink() and os.readlink(link) == target):
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".chrome-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)  # atomic: concurrent processes never see a half-made link
    return root


class Browser:
    """One headless Chromium; each env opens its own isolated context on it. Lives on the browser thread."""

    def __init__(self) -> None:
        os.environ.setdefault("PLAYWRIGHT_BROWSERS_PATH", str(playwright_browsers_dir()))
        start = time.perf_counter()
        self.playwright: pw.Playwright = pw.sync_playwright().start()
        # BrowserGym's actions find elements with get_by_test_id(bid): the test-id attribute must be its "bid".
        self.playwright.selectors.set_test_id_attribute(BROWSERGYM_ID_ATTRIBUTE)
        self.browser = self.playwright.chromium.launch(
            executable_path=chromium_executable(), headless=True, args=list(CHROMIUM_FLAGS)
        )
        self.launch_seconds = time.perf_counter() - start

    def new_context(self, **kwargs: Any) -> pw.BrowserContext:
        """A fresh context (cookies, storage, HAR recording...): `kwargs` go to Playwright's `new_context`."""
        # Service workers would fetch outside the context's routes (origin_guard): none run.
        context: pw.BrowserContext = self.browser.new_context(service_workers="block", **kwargs)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        return context


BROWSER_THREAD = "jitrl-browser"


class BrowserThread:
    """The one thread that runs browser calls, in order. A daemon: one stuck in a page that never answers must not
    keep the process alive at exit (a ThreadPoolExecutor's workers are joined at exit, and the run would hang)."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._work.put((work, future))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=BROWSER_THREAD, daemon=True)
                self._thread.start()
        return future

    def _serve(self) -> None:
        while True:
            work, future = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as error:  # the caller re-raises it
                    future.set_exception(error)


T = TypeVar("T")
_EXECUTOR = BrowserThread()
_BROWSER: Browser | None = None


def on_browser_thread(
    work: Callable[[], T], deadline_s: float | None = None, on_expiry: Sequence[Callable[[], None]] = ()
) -> T:
    """Run `work` on the one thread that owns Playwright, and return its result (or raise its exception).

    Playwright's sync objects only work on the thread that made them, while the runner plays episodes on worker
    threads and closes envs from the main one: every browser call goes through this thread instead. Browser calls
    are short next to a policy's forward pass, so serialising them costs little.

    A page that never answers (a script in an endless loop: `evaluate` has no timeout) would hold this thread, and
    with it every web env of the process. With `deadline_s`, the caller stops waiting then and tries each of
    `on_expiry` in turn, each given `EXPIRY_GRACE_S` to free the thread (web envs: stop the page's script, see
    `interrupt_soon`, measured to free it 0.3-0.4 s after the deadline with two cores fully busy; then close the page's
    context). Only if the thread is still held after them all is the whole browser closed, as a last resort: episodes
    in flight on other contexts then fail as infrastructure (the runner retries them) and the next call launches a
    new browser. If even that does not free the thread (stuck in Python), InfraError.
    """
    if threading.current_thread().name.startswith(BROWSER_THREAD):
        return work()
    future = _EXECUTOR.submit(work)
    if deadline_s is None:
        return future.result()
    with contextlib.suppress(WaitedTooLong):
        return future.result(timeout=deadline_s)
    for free in (*on_expiry, close_browser_soon):
        free()
        with contextlib.suppress(WaitedTooLong):
            return future.result(timeout=EXPIRY_GRACE_S)
    waited = deadline_s + (len(on_expiry) + 1) * EXPIRY_GRACE_S
    raise InfraError(f"the browser thread is still busy {waited:g} s into a call")


def close_soon(target: pw.BrowserContext | pw.Browser) -> None:
    """Close a context or the browser from any thread, even while the browser thread waits in a call on it.

    The browser thread's event loop keeps running while a sync call waits (Playwright's dispatcher), so a close
    scheduled on that loop runs at once, on the right thread; the waiting call then fails with "target closed". This
    reaches into Playwright's sync wrappers (`_loop`, `_impl_obj`, Playwright 1.44): tests/envs/web/test_web_guards.py
    guards it.
    """
    loop, impl = target._loop, target._impl_obj

    async def close() -> None:
        with contextlib.suppress(Exception):
            await impl.close()

    _on_playwright_loop(loop, close)


def interrupt_soon(session: pw.CDPSession) -> None:
    """Stop the script running in a page (`Runtime.terminateExecution` on its CDP session), from any thread.

    Chromium takes this command on the renderer's IO thread, so it reaches a page stuck in `while (true) {}`; the call
    waiting on that page then fails at once, without the renderer being torn down (which a context close needs, and
    which a starved machine can take seconds to finish). Same reach into Playwright's wrappers as `close_soon`.
    """
    loop, impl = session._loop, session._impl_obj

    async def interrupt() -> None:
        with contextlib.suppress(Exception):
            await impl.send("Runtime.terminateExecution")

    _on_playwright_loop(loop, interrupt)


def _on_playwright_loop(loop: asyncio.AbstractEventLoop, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing is left to do
            loop.call_soon_threadsafe(lambda: loop.create_task(work()))


def close_browser_soon() -> None:
    """`close_soon` on the process's browser, if one runs (the next `shared_browser()` launches a new one)."""
    if _BROWSER is not None:
        close_soon(_BROWSER.browser)


def shared_browser() -> Browser:
    """The process's browser, launched on first use; call it on the browser thread (see `on_browser_thread`)."""
    global _BROWSER
    if not threading.current_thread().name.startswith(BROWSER_THREAD):
        raise RuntimeError("shared_browser() must run on the browser thread: wrap the call in on_browser_thread")
    if _BROWSER is not None and not _BROWSER.browser.is_connected():  # crashed or closed: start over
        with contextlib.suppress(Exception):
            _BROWSER.playwright.stop()  # one Playwright per thread: the old driver must go first
        _BROWSER = None
    if _BROWSER is None:
        _BROWSER = Browser()
    return _BROWSER


def close_quietly(context: pw.BrowserContext | None) -> None:
    """Close a context (this is also when Playwright writes its HAR); a browser already gone is not an error."""
    if context is None:
        return
    with contextlib.suppress(pw.Error):
        context.close()


__all__ = [
    "Browser",
    "chromium_executable",
    "close_browser_soon",
    "close_quietly",
    "close_soon",
    "on_browser_thread",
    "playwright_browsers_dir",
    "shared_browser",
]
