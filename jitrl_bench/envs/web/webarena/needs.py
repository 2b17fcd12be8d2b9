"""What a WebArena run needs from this machine: its sites, each answering at its `$WA_*` URL, and each account that
signs in through a login form. `jitrl-bench doctor` shows these rows."""

from __future__ import annotations

import os
import urllib.request

from jitrl_bench.contract import Requirement
from jitrl_bench.envs.web.browser import chromium_requirement, on_browser_thread, shared_browser
from jitrl_bench.envs.web.webarena.sites import LOGIN_FORMS, env_var, ui_login

WEBARENA_URLS = ("WA_SHOPPING", "WA_SHOPPING_ADMIN", "WA_REDDIT", "WA_GITLAB", "WA_MAP", "WA_WIKIPEDIA", "WA_HOMEPAGE")
REACH_TIMEOUT_S = 3.0


def webarena_requirements() -> list[Requirement]:
    """The browser, then each site in $WA_*: does it answer, and does its account sign in (sites with a login form)?"""
    rows = [chromium_requirement()]
    configured = [var for var in WEBARENA_URLS if os.environ.get(var)]
    if not configured:
        fix = "export the WA_* variables of docs/webarena.env.example"
        return [*rows, Requirement("WebArena sites (WA_* URLs)", False, "none set (needed only for web runs)", fix)]
    for var in configured:
        ok, detail = _reachable(os.environ[var])
        rows.append(Requirement(var, ok, detail, "start the site or fix the URL"))
        if ok:
            rows.append(_login(var.removeprefix("WA_").lower(), os.environ[var]))
    reset = os.environ.get("WA_FULL_RESET")
    if reset:
        rows.append(Requirement("WA_FULL_RESET", *_reachable(reset.rstrip("/") + "/status"), "start the reset server"))
    return rows


def _login(site: str, url: str) -> Requirement:
    part = f"{site} login"
    if site not in LOGIN_FORMS:
        return Requirement(part, True, "no account needed")
    try:
        cookies = on_browser_thread(lambda: ui_login(shared_browser(), site, url.rstrip("/")))
    except Exception as e:  # doctor reports, never crashes
        fix = f"set ${env_var(site)}_USERNAME and ${env_var(site)}_PASSWORD to a working account"
        return Requirement(part, False, str(e).splitlines()[0], fix)
    return Requirement(part, True, f"signed in as ${env_var(site)}_USERNAME ({len(cookies)} cookies)")


def _reachable(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=REACH_TIMEOUT_S) as response:
            return True, f"{url} → HTTP {response.status}"
    except Exception as e:  # doctor reports, never crashes
        return False, f"{url} → {type(e).__name__}: {e}"
