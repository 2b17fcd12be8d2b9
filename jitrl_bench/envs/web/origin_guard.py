"""Keep every request of a web episode on the task's sites, and its extra headers on the sites they are for.

Checking `goto` alone is not enough: a link, a form, a script's fetch, a redirect or a popup can leave the sites, and
a context-wide `extra_http_headers` would hand a gateway token to whatever origin the page reaches. So each episode's
context routes every request through `RequestGuard`:

- a request to an origin outside the policy is aborted (`net::ERR_ABORTED`: a navigation stays on the page it left)
  and listed in the step's `blocked_requests`;
- an allowed http(s) request is fetched by Playwright with the extra headers added for that request only, without
  following redirects (Playwright never routes a redirect's next hop, and would copy the headers onto it): a redirect
  to another origin is blocked like any other request, one to an allowed origin is handed to the browser;
- `file://` requests load only from the policy's folder (MiniWoB's pages).

Playwright records both the browser's request and its own fetch in the HAR; `scrub_har` keeps the browser's entries
on allowed origins only and strips the extra headers, so neither a blocked request nor a header value is kept.

WebSocket connections (from a page or a worker) are not routed by Playwright 1.44, and CDP's `Network.setBlockedURLs`
does not stop them either (tried). So every response the guard fulfils also carries a Content-Security-Policy whose
`connect-src` names the task's sites only (`connect_policy`): the browser itself then refuses a WebSocket, fetch, XHR
or EventSource to any other origin, from the page and from the workers it starts (their scripts are fulfilled here
too). A site's own policy is kept beside it (policies only restrict: the browser enforces each). Pages loaded from
`file://` (MiniWoB's) are not fulfilled here, so this does not reach them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import playwright.sync_api as pw

FETCH_TIMEOUT_MS = 30_000  # one request of a slow real site (Magento, GitLab under load)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CSP = "content-security-policy"
MAX_RECORDED = 200  # blocked requests kept per step (a page polling another origin would list thousands)


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower case, the default port left out (as browsers compare origins)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


@dataclass(frozen=True)
class SitePolicy:
    """Where one episode's requests may go."""

    origins: tuple[str, ...] = ()
    """The http(s) origins (`scheme://host[:port]`) of the task's sites."""
    files: str = ""
    """A `file://` folder URL whose files may load (MiniWoB's task pages); "" allows no file."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers (e.g. a gateway token from $PW_EXTRA_HEADERS), added to requests to `origins` only."""

    def connect_policy(self) -> str:
        """CSP `connect-src`: WebSockets to the task's sites only (ws for http, wss for https); every http(s)
        request stays allowed here, as the route blocks and records those that leave the sites (`http:` does not
        match `ws:` in CSP)."""
        sources = ["http:", "https:", "data:", "blob:"]
        for origin in dict.fromkeys(origin_of(o) for o in self.origins):
            sources += [origin, origin.replace("http", "ws", 1)]
        return "connect-src " + " ".join(sources)

    def allows(self, url: str) -> bool:
        if url.startswith(("data:", "blob:", "about:")):  # made by the page itself: no network
            return True
        if url.startswith("file:"):
            return bool(self.files) and url.startswith(self.files) and ".." not in url
        return origin_of(url) in {origin_of(o) for o in self.origins}


class RequestGuard:
    """Routes one context's requests under a `SitePolicy` and lists what it blocked since the last `take_blocked`.

    Its handlers run on the browser thread (Playwright calls them there), like every other browser call.
    """

    def __init__(self, policy: SitePolicy) -> None:
        self.policy = policy
        self._blocked: list[str] = []
        self._csp = policy.connect_policy()

    def install(self, context: pw.BrowserContext) -> None:
        context.route("**/*", self._route)
        context.on("request", self._watch)

    def take_blocked(self) -> list[str]:
        """The requests blocked since the last call (at most MAX_RECORDED, then a count of the rest)."""
        blocked, self._blocked = self._blocked, []
        if len(blocked) > MAX_RECORDED:
            blocked = [*blocked[:MAX_RECORDED], f"... and {len(blocked) - MAX_RECORDED} more"]
        return blocked

    def _block(self, route: pw.Route, url: str) -> None:
        self._blocked.append(url[:300])
        with contextlib.suppress(pw.Error):  # the page may be gone already
            route.abort("aborted")

    def _route(self, route: pw.Route) -> None:
        request = route.request
        if not self.policy.allows(request.url):
            self._block(route, request.url)
            return
        if not request.url.startswith(("http:", "https:")):
            with contextlib.suppress(pw.Error):
                route.continue_()
            return
        try:
            response = route.fetch(
                headers={**request.headers, **self.policy.headers}, max_redirects=0, timeout=FETCH_TIMEOUT_MS
            )
        except pw.Error as error:
            reason = "connectionrefused" if "ECONNREFUSED" in str(error) else "failed"
            with contextlib.suppress(pw.Error):
                route.abort(reason)  # the browser reports the site's failure as its own (net::ERR_...)
            return
        location = response.headers.get("location", "")
        if response.status in REDIRECTS and location:
            target = urljoin(request.url, location)
            if not self.policy.allows(target):
                self._block(route, target)
                return
        headers = dict(response.headers)
        own = headers.pop(CSP, None) or headers.pop(CSP.title(), None)
        headers[CSP] = f"{own}, {self._csp}" if own else self._csp  # two policies: the browser enforces both
        with contextlib.suppress(pw.Error):
            route.fulfill(response=response, headers=headers)

    def _watch(self, request: pw.Request) -> None:
        """A request the route never saw (the next hop of a redirect between two allowed origins) that left the
        sites anyway: it cannot be stopped here, but it is listed."""
        if request.redirected_from is not None and not self.policy.allows(request.url):
            self._blocked.append(f"{request.url[:300]} (a redirect's next hop: not stopped)")


def scrub_har(path: Path | None, policy: SitePolicy) -> None:
    """Rewrite a HAR in place: only the browser's entries for allowed URLs, without the policy's extra headers.

    Call it after the context closed (Playwright writes the HAR then); a missing or unreadable HAR is left alone.
    """
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return
    try:
        har = json.loads(path.read_text(encoding="utf-8"))
        entries = har["log"]["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    secret = {name.lower() for name in policy.headers}
    kept = []
    for entry in entries:
        request = entry.get("request", {})
        if entry.get("_apiRequest") or not policy.allows(str(request.get("url", ""))):
            continue
        request["headers"] = [h for h in request.get("headers", []) if str(h.get("name", "")).lower() not in secret]
        kept.append(entry)
    har["log"]["entries"] = kept
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(har), encoding="utf-8")
    os.replace(tmp, path)
