"""The user's WebArena sites: their URLs, several instances for parallel episodes, login, and full resets.

WebArena tasks change the sites' state (an order placed, an issue closed), so a harness must know which copy of the
sites an episode ran on, keep one episode per copy at a time, and reset a copy when asked. Everything here is about
the infrastructure, not the agent: failures raise `InfraError` (retried by the runner, then recorded as `error`).

Instances are leased off the browser thread (`InstancePool.acquire` may wait for a free copy or a reset that takes
minutes); logins run on the browser thread in their own context, never in the episode's recorded one.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import playwright.sync_api as pw
from webarena_verified.environments import MAGENTO_ADMIN_AUTO_LOGIN_HEADER

from jitrl_bench.contract import Leases
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.leases import LeaseBook

SITES = ("shopping", "shopping_admin", "reddit", "gitlab", "map", "wikipedia", "homepage")
RESET_MODES = ("none", "run", "task")
LOGIN_MODES = ("ui", "header", "none")
RESET_READY = "Ready for duty!"  # the WebArena reset server's /status body once every site is back
RESET_TIMEOUT_S = 900.0  # a full WebArena reset restarts every container: several minutes
LEASE_POLL_S = 0.5  # how often a process waiting for a copy asks a shared book again
LOGIN_TTL_S = 1800.0  # sessions are re-made after this long (WebArena sites expire idle logins)
HEADER_LOGIN = {"shopping_admin": MAGENTO_ADMIN_AUTO_LOGIN_HEADER}  # the Magento admin image's auto-login header


def env_var(site: str) -> str:
    """`WA_GITLAB` for gitlab, `WA_SHOPPING_ADMIN` for shopping_admin..."""
    return f"WA_{site.upper()}"


def placeholder(site: str) -> str:
    """The token task data uses for a site's base URL, e.g. `__GITLAB__`."""
    return f"__{site.upper()}__"


def site_urls(configured: dict[str, str | None] | None = None) -> dict[str, str]:
    """Base URL per site: the config's, else `$WA_<SITE>`; sites with neither are absent. No trailing slash."""
    urls = {site: os.environ.get(env_var(site), "") for site in SITES}
    urls.update({str(k): str(v) for k, v in (configured or {}).items() if v})
    unknown = sorted(set(urls) - set(SITES))
    if unknown:
        raise UserError(f"unknown WebArena site(s) {', '.join(unknown)}; sites are: {', '.join(SITES)}")
    return {site: url.rstrip("/") for site, url in urls.items() if url}


def render(template: str, urls: dict[str, str]) -> str:
    """A task URL with its `__SITE__` placeholders replaced; UserError when a site's URL is not configured."""
    for site in SITES:
        token = placeholder(site)
        if token in template:
            if site not in urls:
                raise UserError(f"task needs the {site} site: set ${env_var(site)} or env.urls.{site}")
            template = template.replace(token, urls[site])
    return template


def extra_headers() -> dict[str, str]:
    """HTTP headers for every request of an episode, from the JSON file `$PW_EXTRA_HEADERS` names (BrowserGym's
    convention, e.g. a gateway token in front of the sites); {} when unset."""
    path = os.environ.get("PW_EXTRA_HEADERS")
    if not path:
        return {}
    try:
        headers = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"$PW_EXTRA_HEADERS={path}: not a readable JSON file of headers ({error})") from None
    if not isinstance(headers, dict):
        raise UserError(f"$PW_EXTRA_HEADERS={path}: the file must hold one JSON object {{header: value}}")
    return {str(k): str(v) for k, v in headers.items()}


@dataclass(frozen=True)
class Instance:
    """One copy of the WebArena sites."""

    index: int
    urls: dict[str, str] = field(hash=False)
    reset_url: str = ""
    """Base URL of this copy's reset server (`$WA_FULL_RESET` for the default instance)."""


def instances_from(configured: list[dict[str, str]], urls: dict[str, str | None] | None) -> list[Instance]:
    """`env.instances` (a list of {site: url, reset: url}), or one instance from `env.urls` / `$WA_*`."""
    if not configured:
        return [Instance(0, site_urls(urls), os.environ.get("WA_FULL_RESET", "").rstrip("/"))]
    out = []
    for i, entry in enumerate(configured):
        entry = {str(k): str(v) for k, v in dict(entry).items()}
        reset = entry.pop("reset", "")
        unknown = sorted(set(entry) - set(SITES))
        if unknown:
            raise UserError(f"env.instances[{i}]: unknown site(s) {', '.join(unknown)}; sites are: {', '.join(SITES)}")
        out.append(Instance(i, {s: u.rstrip("/") for s, u in entry.items() if u}, reset.rstrip("/")))
    return out


@dataclass
class ResetPolicy:
    """When a copy of the sites is reset to its initial state, and how."""

    mode: str = "none"
    """none | run (each instance once, before its first episode) | task (before each new task on an instance)."""
    command: list[str] = field(default_factory=list)
    """A program (argv, no shell) that resets an instance instead of the reset server; gets WA_INSTANCE=<index>."""

    def __post_init__(self) -> None:
        if self.mode not in RESET_MODES:
            raise UserError(f"env.reset={self.mode!r}: use one of {', '.join(RESET_MODES)}")


def reset_instance(instance: Instance, policy: ResetPolicy, poll_s: float = 5.0) -> None:
    """Reset one copy: the configured command, else the reset server (GET /reset, then poll /status until ready)."""
    if policy.command:
        environment = {**os.environ, "WA_INSTANCE": str(instance.index)}
        try:
            done = subprocess.run(
                policy.command, env=environment, capture_output=True, text=True, timeout=RESET_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise InfraError(f"reset command {policy.command[0]} failed: {error}") from None
        if done.returncode != 0:
            raise InfraError(f"reset command exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return
    if not instance.reset_url:
        raise UserError(f"env.reset={policy.mode} needs $WA_FULL_RESET (or env.instances[].reset, env.reset_command)")
    status, _ = _get(f"{instance.reset_url}/reset")
    if status not in (200, 418):  # 418: a reset is already running; wait for it like for ours
        raise InfraError(f"reset server {instance.reset_url} answered HTTP {status}")
    deadline = time.monotonic() + RESET_TIMEOUT_S
    while time.monotonic() < deadline:
        status, text = _get(f"{instance.reset_url}/status")
        if status == 200 and text.strip() == RESET_READY:
            return
        if status != 200:
            raise InfraError(f"reset server {instance.reset_url}/status answered HTTP {status}")
        time.sleep(poll_s)
    raise InfraError(f"instance {instance.index} not ready {RESET_TIMEOUT_S:.0f} s after its reset")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status), response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), ""
    except OSError as error:
        raise InfraError(f"cannot reach {url}: {error}") from None


class InstancePool:
    """Leases copies of the sites: one episode per copy at a time, from this process's own `LeaseBook` or from one
    shared with other processes (`lease_from`: a Ray run's workers). Resets a copy when the lease says so; a copy
    reset anywhere since this process last saw it is forgotten here (`on_reset`, e.g. its login sessions: a reset
    signs everyone out)."""

    def __init__(
        self,
        instances: list[Instance],
        reset: ResetPolicy,
        resetter: Callable[[Instance, ResetPolicy], None] = reset_instance,
        on_reset: Callable[[Instance], None] = lambda instance: None,
    ) -> None:
        self.instances = instances
        self.reset = reset
        self._resetter = resetter
        self._on_reset = on_reset
        self._leases: Leases = LeaseBook(len(instances), reset.mode)
        self._holder = "local"
        self._seen: dict[int, int] = {}
        """Resets of each copy this process has accounted for."""
        self._cond = threading.Condition()

    @property
    def copies(self) -> int:
        return len(self.instances)

    @property
    def reset_mode(self) -> str:
        return self.reset.mode

    def lease_from(self, leases: Leases, holder: str) -> None:
        with self._cond:
            self._leases, self._holder = leases, holder

    def acquire(self, task: str) -> Instance:
        """A free copy (waits for one), reset first if the lease says so. Call off the browser thread."""
        with self._cond:
            while (lease := self._leases.take(task, self._holder)) is None:
                self._cond.wait(LEASE_POLL_S)  # a copy another process gives back wakes no one here
        instance = self.instances[lease.index]
        try:
            if lease.reset:
                self._resetter(instance, self.reset)
            if self._seen.get(lease.index, 0) != lease.resets:
                self._on_reset(instance)
                self._seen[lease.index] = lease.resets
            with self._cond:
                self._leases.ready(lease.index, task)
        except BaseException:
            self.release(instance)
            raise
        return instance

    def release(self, instance: Instance) -> None:
        with self._cond:
            self._leases.give_back(instance.index)
            self._cond.notify()


@dataclass(frozen=True)
class LoginForm:
    """How to sign in to one site through its own form, by the labels a person reads (sturdier than CSS ids)."""

    path: str
    username: str
    password: str
    submit: str
    """The button's accessible name."""
    open_with: str = ""
    """A link to click first when the form is not on `path` itself (Postmill's "Log in")."""


LOGIN_FORMS = {
    "shopping": LoginForm("/customer/account/login/", "Email", "Password", "Sign In"),
    "shopping_admin": LoginForm("", "Username", "Password", "Sign in"),
    "gitlab": LoginForm("/users/sign_in", "Username or email", "Password", "Sign in"),
    "reddit": LoginForm("", "Username", "Password", "Log in", open_with="Log in"),
}
"""The sites that need an account, as their login pages in the WebArena images read."""


def credentials(site: str) -> tuple[str, str]:
    """`$WA_<SITE>_USERNAME` and `$WA_<SITE>_PASSWORD` (docs/webarena.env.example has WebArena's accounts)."""
    user, password = os.environ.get(f"{env_var(site)}_USERNAME"), os.environ.get(f"{env_var(site)}_PASSWORD")
    if not user or not password:
        raise UserError(
            f"login to {site} needs ${env_var(site)}_USERNAME and ${env_var(site)}_PASSWORD (or env.login=none)"
        )
    return user, password


class Logins:
    """Signed-in browser state per (instance, site), made by a UI login in a throwaway context and reused for
    `LOGIN_TTL_S`. Episodes start from this state, so login requests never appear in an episode's recording."""

    def __init__(self, mode: str = "ui") -> None:
        if mode not in LOGIN_MODES:
            raise UserError(f"env.login={mode!r}: use one of {', '.join(LOGIN_MODES)}")
        self.mode = mode
        self._states: dict[tuple[int, str], tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def context_options(self, browser: Any, instance: Instance, sites: list[str]) -> dict[str, Any]:
        """`new_context` options that start an episode signed in to `sites` (browser thread only)."""
        if self.mode == "none":
            return {}
        if self.mode == "header":
            headers = {HEADER_LOGIN[s]: credentials(s)[0] for s in sites if s in HEADER_LOGIN}
            return {"extra_http_headers": headers} if headers else {}
        cookies: list[dict[str, Any]] = []
        for site in sites:
            if site in LOGIN_FORMS and site in instance.urls:
                cookies += self._cookies(browser, instance, site)
        return {"storage_state": {"cookies": cookies, "origins": []}} if cookies else {}

    def forget(self, instance: Instance) -> None:
        """Drop an instance's sessions (after a reset, or when a site sent the agent back to its login page)."""
        with self._lock:
            for key in [k for k in self._states if k[0] == instance.index]:
                del self._states[key]

    def _cookies(self, browser: Any, instance: Instance, site: str) -> list[dict[str, Any]]:
        key = (instance.index, site)
        with self._lock:
            made, cookies = self._states.get(key, (0.0, []))
        if cookies and time.monotonic() - made < LOGIN_TTL_S:
            return cookies
        cookies = ui_login(browser, site, instance.urls[site])
        with self._lock:
            self._states[key] = (time.monotonic(), cookies)
        return cookies


def ui_login(browser: Any, site: str, url: str) -> list[dict[str, Any]]:
    """Sign in through the site's own form in a fresh context; its cookies. InfraError when the site refuses."""
    form = LOGIN_FORMS[site]
    user, password = credentials(site)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url + form.path)
        if form.open_with:
            page.get_by_role("link", name=form.open_with).click()
        page.get_by_label(form.username, exact=True).fill(user)
        page.get_by_label(form.password, exact=True).fill(password)
        page.get_by_role("button", name=form.submit).click()
        page.wait_for_load_state()
        if page.locator("input[type=password]").count() > 0:
            raise InfraError(f"login to {site} at {url} failed: still on the login form (check the credentials)")
        return list(context.cookies())
    except pw.Error as error:
        raise InfraError(f"login to {site} at {url} failed: {str(error).splitlines()[0]}") from None
    finally:
        context.close()
