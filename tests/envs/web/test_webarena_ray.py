"""`jitrl-bench run env=webarena_verified run.executor=ray` with two workers and one copy of the sites (a stand-in
GitLab and reset server on 127.0.0.1): the copy is leased across the workers' processes, one episode at a time, and
reset once for the run, as a local run with `run.concurrency` leases it across threads."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from tests.envs.web.web_support import require_browser
from tests.processes import suite_processes

pytest.importorskip("webarena_verified", reason="needs the web extra: make setup")
pytest.importorskip("ray", reason="needs the cluster extra: make setup")

from scripts.webarena_standin import NAV, GitLabStandIn, ResetServer, serve

require_browser()
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("gitlab_account")]


class SteadyGitLab(GitLabStandIn):
    """No 502 link: every episode finishes, so each one's time on the copy is in its HAR."""

    nav = NAV.replace("<a href='/broken'>Broken</a>", "")


def span(har: Path) -> tuple[datetime, datetime]:
    """When an episode's first request left and its last answer came back."""
    entries = json.loads(har.read_text())["log"]["entries"]
    starts = [datetime.fromisoformat(e["startedDateTime"].replace("Z", "+00:00")) for e in entries]
    ends = [s + timedelta(milliseconds=float(e["time"])) for s, e in zip(starts, entries, strict=True)]
    return min(starts), max(ends)


def test_two_ray_workers_lease_one_copy_of_the_sites_in_turn(tmp_path: Path) -> None:
    gitlab, reset = serve(SteadyGitLab, 0), serve(ResetServer, 0)
    urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in (gitlab, reset)]
    before = ResetServer.resets
    copy = f"env.instances=[{{gitlab:'{urls[0]}',reset:'{urls[1]}'}}]"
    try:
        result = CliRunner().invoke(app, [
            "run", "env=webarena_verified", "env.tasks=[44]", copy,
            "env.reset=run", "policy=uniform", "run.episodes=2", "run.max_steps=3", "run.progress=false",
            "run.executor=ray", "run.ray.workers=2", f"run.dir={tmp_path / 'run'}",
        ])  # fmt: skip
    finally:
        for server in (gitlab, reset):
            server.shutdown()
            server.server_close()
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["status"] == "ok" and r["artifacts"]["instance"] == 0 for r in rows)
    assert {r["agent"] for r in rows} == {"jitrl", "static"}  # two streams: one per worker, at the same time
    assert ResetServer.resets == before + 1  # reset once for the run, not once per worker
    spans = sorted(span(Path(r["artifacts"]["har"])) for r in rows)
    for (_, end), (start, _) in combinations(spans, 2):
        assert end <= start, "two episodes used the one copy of the sites at once"
    assert suite_processes("ray::StreamWorker") == set()
