"""Small local stand-ins for WebArena's sites, to try the WebArena envs without a WebArena host.

Serves, on 127.0.0.1, the GitLab pages that task 44 ("Open my todos page", in all three task sets) and the original
task 418 / Lite task 419 (set my GitLab status) need, behind a sign-in form shaped like GitLab's; the shopping
product page of WebArena-Verified task 163 (its reviews) with Magento's customer login; and a reset server
(GET /reset, GET /status) like the one `$WA_FULL_RESET` names. The tests use the same servers. Run it, then in
another shell:

    python scripts/webarena_standin.py            # prints the variables to export
    export WA_GITLAB=http://127.0.0.1:8023 WA_GITLAB_USERNAME=byteblaze WA_GITLAB_PASSWORD=hello1234
    jitrl-bench run env=webarena_verified env.tasks=[44] run.episodes=2
"""

from __future__ import annotations

import argparse
import contextlib
import html
import http.server
import secrets
import threading
import time
import urllib.parse
from typing import Any, ClassVar

USERNAME, PASSWORD = "byteblaze", "hello1234"  # the stand-in's own account, the same name WebArena's GitLab uses

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
SIGN_IN = (
    "<h1>Sign in</h1><form method='post' action='/users/sign_in'>"
    "<label for='user_login'>Username or email</label><input id='user_login' name='login'>"
    "<label for='user_password'>Password</label><input id='user_password' name='password' type='password'>"
    "<button type='submit'>Sign in</button></form>"
)


class StandInSite(http.server.BaseHTTPRequestHandler):
    """What every stand-in site shares: sessions by cookie, pages with a title, quiet logs."""

    cookie_name: ClassVar[str] = "session"

    def _form(self) -> dict[str, list[str]]:
        length = int(self.headers.get("Content-Length") or 0)
        return urllib.parse.parse_qs(self.rfile.read(length).decode())

    def _session(self) -> str:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie_name:
                return value
        return ""

    def _new_session(self, sessions: set[str]) -> str:
        token = secrets.token_hex(8)
        sessions.add(token)
        return f"{self.cookie_name}={token}; Path=/"

    def _redirect(self, location: str, cookie: str = "") -> None:
        self.send_response(302)
        self.send_header("Location", location)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, title: str, body: str) -> None:
        data = f"<html><head><title>{title}</title></head><body>{body}</body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class GitLabStandIn(StandInSite):
    """GitLab's pages for task 44 behind a sign-in form; /broken and /boom answer 502 (a site having a bad day)."""

    cookie_name = "_gitlab_session"
    nav: ClassVar[str] = NAV
    sessions: ClassVar[set[str]] = set()
    sign_ins = 0
    require_login = True

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith(("/broken", "/boom")):
            self._send(502, "502 Bad Gateway", "<h1>502 Bad Gateway</h1>")
        elif path == "/users/sign_in":
            self._send(200, "Sign in · GitLab", SIGN_IN)
        elif path in PAGES:
            if self.require_login and self._session() not in self.sessions:
                self._redirect("/users/sign_in")
                return
            title, body = PAGES[path]
            self._send(200, title, self.nav + body)
        else:
            self._send(404, "Not Found", "<h1>404</h1>")

    def do_POST(self) -> None:
        form = self._form()
        if self.path == "/users/sign_in" and form.get("login") == [USERNAME] and form.get("password") == [PASSWORD]:
            GitLabStandIn.sign_ins += 1  # one count for every subclass
            self._redirect("/", cookie=self._new_session(self.sessions))
        else:
            self._send(200, "Sign in · GitLab", "<p>Invalid login or password.</p>" + SIGN_IN)


SHOPPER, SHOPPER_PASSWORD = "emma.lopez@gmail.com", "Password.123"  # the stand-in's customer, named like WebArena's
PRODUCT = "/ostent-16gb-memory-card-stick-storage-for-sony-ps-vita-psv1000-2000-pch-z081-z161-z321-z641.html"
REVIEWS = (("Memory Card Came Defective", 1), ("Works great", 5), ("Does the job", 4), ("Too slow for me", 3))
"""Task 163 (WebArena-Verified): "Get all review titles with 2 stars or below for the product on the current page"."""
CUSTOMER_LOGIN = (
    "<h1>Customer Login</h1><form method='post' action='/customer/account/loginPost/'>"
    "<label for='email'>Email</label><input id='email' name='login[username]' type='email'>"
    "<label for='pass'>Password</label><input id='pass' name='login[password]' type='password'>"
    "<button type='submit'>Sign In</button></form>"
)


class ShoppingStandIn(StandInSite):
    """One Stop Market (Magento) for task 163: a product page with its reviews, and the customer login form."""

    cookie_name = "PHPSESSID"
    sessions: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/customer/account/login/":
            self._send(200, "Customer Login", CUSTOMER_LOGIN)
        elif path in ("/", PRODUCT):
            welcome = "Welcome, Emma Lopez!" if self._session() in self.sessions else "Sign In"
            rows = "".join(f"<li><h3>{title}</h3><p>Rating: {stars} of 5 stars</p></li>" for title, stars in REVIEWS)
            body = f"<header>{welcome}</header><h1>Ostent 16GB Memory Card</h1><p>$19.99</p><ul>{rows}</ul>"
            self._send(200, "One Stop Market", body if path == PRODUCT else f"<header>{welcome}</header>")
        else:
            self._send(404, "404 Not Found", "<h1>Whoops, our bad...</h1>")

    def do_POST(self) -> None:
        form = self._form()
        right = form.get("login[username]") == [SHOPPER] and form.get("login[password]") == [SHOPPER_PASSWORD]
        if self.path == "/customer/account/loginPost/" and right:
            self._redirect("/", cookie=self._new_session(self.sessions))
        else:
            self._send(200, "Customer Login", "<p>The account sign-in was incorrect.</p>" + CUSTOMER_LOGIN)


class ResetServer(http.server.BaseHTTPRequestHandler):
    """`$WA_FULL_RESET` stand-in: /reset signs everyone out and is 'resetting' for a moment; /status says when ready."""

    resets = 0
    ready_at = 0.0
    seconds = 0.2

    def do_GET(self) -> None:
        if self.path == "/reset":
            if time.monotonic() < self.ready_at:
                self._send(418, "Reset already running")
                return
            type(self).resets += 1
            type(self).ready_at = time.monotonic() + self.seconds
            GitLabStandIn.sessions.clear()
            self._send(200, "Reset started")
        elif self.path == "/status":
            self._send(200, "Ready for duty!" if time.monotonic() >= self.ready_at else "Resetting")
        else:
            self._send(404, "not found")

    def _send(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(handler: type[http.server.BaseHTTPRequestHandler], port: int, host: str = "127.0.0.1") -> Any:
    """Start a threaded server in the background; returns it (call .shutdown() and .server_close())."""
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# The original WebArena's GitLab tasks 418/419 ("Set my gitlab status as Busy" / "... as Enjoying life"): their
# program_html check opens the user's profile page and reads `.cover-status` (the status is its last text node).
STATUS_FORM = (
    "<h1>Edit profile</h1><form method='post' action='/-/profile'>"
    "<label for='user_status'>Your status</label><input id='user_status' name='status'>"
    "<button type='submit'>Set status</button></form>"
)


class ProfileGitLabStandIn(GitLabStandIn):
    """GitLabStandIn plus the profile pages of the original tasks 418/419: /-/profile sets the user's status and
    /byteblaze shows it the way GitLab does (an emoji, then the text, in `.cover-status`)."""

    status = ""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path not in ("/-/profile", f"/{USERNAME}"):
            super().do_GET()
        elif self.require_login and self._session() not in self.sessions:
            self._redirect("/users/sign_in")
        elif path == "/-/profile":
            self._send(200, "Edit Profile · GitLab", NAV + STATUS_FORM)
        else:
            shown = f"<div class='cover-status'><span>*</span>{html.escape(self.status)}</div>" if self.status else ""
            self._send(200, f"{USERNAME} · GitLab", f"{NAV}<h1>{USERNAME}</h1>{shown}")

    def do_POST(self) -> None:
        if self.path != "/-/profile":
            super().do_POST()
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if self.require_login and self._session() not in self.sessions:
            self._redirect("/users/sign_in")
            return
        type(self).status = form.get("status", [""])[0]
        self._redirect(f"/{USERNAME}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gitlab-port", type=int, default=8023)
    parser.add_argument("--shopping-port", type=int, default=7770)
    parser.add_argument("--reset-port", type=int, default=7565)
    args = parser.parse_args()
    serve(ProfileGitLabStandIn, args.gitlab_port)
    serve(ShoppingStandIn, args.shopping_port)
    serve(ResetServer, args.reset_port)
    print(
        f"export WA_GITLAB=http://127.0.0.1:{args.gitlab_port} WA_GITLAB_USERNAME={USERNAME} "
        f"WA_GITLAB_PASSWORD={PASSWORD} WA_SHOPPING=http://127.0.0.1:{args.shopping_port} "
        f"WA_SHOPPING_USERNAME={SHOPPER} WA_SHOPPING_PASSWORD={SHOPPER_PASSWORD} "
        f"WA_FULL_RESET=http://127.0.0.1:{args.reset_port}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
