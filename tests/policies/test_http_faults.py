"""`jitrl-bench run policy=openai` against a fake OpenAI-compatible server that misbehaves on purpose.

The server (stdlib http.server on 127.0.0.1, in this process) is outside the subject: it plays a script of faults, one
per request (429 with Retry-After, 503, a dropped connection, a stall, a trickled reply, an oversized reply, JSON nested
too deeply), and records when each request came. The run is the real CLI in verbalized mode (one chat call a step,
no tokenizer), a static agent on the real TextWorld game, 2 episodes of 2 steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.processes import REPO, rows_of

REPLY = json.dumps(
    {"choices": [{"index": 0, "message": {"role": "assistant", "content": '{"1": 60, "2": 30}'}}]}
).encode()


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = script  # what to play, one per request, in order; the last again after it
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), what was played)
        self.lock = threading.Lock()
        self.closing = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up on a keep-alive connection, or on a reply it gave up on

    def next_act(self) -> str:
        with self.lock:
            act = self.script[min(len(self.arrivals), len(self.script) - 1)]
            self.arrivals.append((time.monotonic(), act))
            return act


class Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.play(self.server.next_act())

    def play(self, act: str) -> None:
        if act == "ok":
            self.reply(200, REPLY)
        elif act == "429":
            self.reply(429, b'{"error": {"message": "slow down"}}', ("Retry-After", "1"))
        elif act == "503":
            self.reply(503, b'{"error": {"message": "overloaded"}}')
        elif act == "drop":
            self.close_connection = True  # no reply at all
        elif act == "stall":
            self.server.closing.wait()
        elif act == "trickle":  # headers, then one byte a second of a reply that would take a day
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            while not self.server.closing.wait(1.0):
                self.wfile.write(b" ")
                self.wfile.flush()
        elif act == "huge":  # valid JSON, 2 MiB: past policy.max_reply_mb=1
            self.reply(200, b'{"pad": "' + b"x" * 2**21 + b'"}')
        elif act == "deep":  # valid JSON, nested past any parser's recursion limit
            self.reply(200, b"[" * 200_000 + b"]" * 200_000)

    def reply(self, status: int, body: bytes, *header: tuple[str, str]) -> None:
        self.send_response(status)
        for name, value in (("Content-Type", "application/json"), ("Content-Length", str(len(body))), *header):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[list[FakeServer]]:
    servers: list[FakeServer] = []
    yield servers
    for server in servers:
        server.closing.set()
        server.shutdown()
        server.server_close()


def start(servers: list[FakeServer], script: list[str]) -> FakeServer:
    server = FakeServer(script)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return server


def run(server: FakeServer, run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    args = [
        "policy=openai", f"policy.base_url={server.base_url}", "policy.mode=verbalized", "policy.tokenizer=null",
        "agent=static", "run.baselines=[]", "run.episodes=2", "run.max_steps=2", "run.progress=false",
        "policy.backoff_s=0.05", f"run.dir={run_dir}", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "jitrl_bench", "run", *args], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.slow
def test_every_fault_is_retried_and_the_run_completes(serve: list[FakeServer], tmp_path: Path) -> None:
    """Each fault costs one retry and the run ends as if none happened. Mutants that fail it (tried): Retry-After
    ignored (the next request comes 0.05 s after the 429); no reply cap (the 2 MiB reply is taken as the answer:
    "returned no chat message", exit 2); RecursionError not caught (a traceback, exit 1)."""
    faults = ["429", "ok", "503", "drop", "ok", "stall", "huge", "ok", "deep", "ok"]
    server = start(serve, faults)
    proc = run(server, tmp_path / "run", "policy.timeout_s=2", "policy.max_retries=2", "policy.max_reply_mb=1")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    rows = rows_of(tmp_path / "run")
    assert [(r["episode"], r["status"], r["steps"]) for r in rows] == [(0, "ok", 2), (1, "ok", 2)]
    assert [act for _, act in server.arrivals] == faults  # 4 steps: each ends with its "ok"
    arrivals = [at for at, _ in server.arrivals]
    assert arrivals[1] - arrivals[0] >= 1.0  # the 429's Retry-After: 1
    assert 2.0 <= arrivals[6] - arrivals[5] < 4.0  # the stall: one deadline of 2 s, then the next try


@pytest.mark.slow
def test_a_trickling_server_ends_the_run_within_the_deadline(serve: list[FakeServer], tmp_path: Path) -> None:
    """Headers, then a byte a second: each try ends at timeout_s, the run after both tries with one line, and the
    finished episode is kept. Mutant that fails it (tried): httpx's per-read timeout, as before (the run waits on)."""
    server = start(serve, ["ok", "ok", "trickle"])  # episode 0 (2 steps), then every request trickles
    run_dir = tmp_path / "run"
    proc = run(server, run_dir, "policy.timeout_s=2", "policy.max_retries=1")
    watchdog = threading.Timer(60, proc.kill)  # the old client: still waiting after a minute
    watchdog.start()
    assert proc.stderr is not None
    lines: list[tuple[float, str]] = [(time.monotonic(), line) for line in proc.stderr if line.strip()]
    watchdog.cancel()
    proc.wait()
    err = "".join(line for _, line in lines)
    assert [act for _, act in server.arrivals] == ["ok", "ok", "trickle", "trickle"], err
    (first, _), (second, _) = server.arrivals[2:]
    said = lines[-1][0] - first if lines else float("inf")
    print(f"\ntrickle: second try after {second - first:.2f} s, the error line {said:.2f} s after the first")
    assert 2.0 <= second - first < 3.0  # the first try ended at its deadline (timeout_s), then backoff
    assert said < 2 * 2 + 3  # timeout_s × (retries + 1) plus a few seconds (the interpreter's exit takes more)
    assert proc.returncode == 2, err  # a policy server that fails stops the run as a lost server does (resumable)
    assert len(lines) == 1 and server.base_url in err and "policy.timeout_s=2" in err, err
    assert [(r["episode"], r["status"]) for r in rows_of(run_dir)] == [(0, "ok")]
