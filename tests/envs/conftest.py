"""Shared fixtures for the env tests: a fresh cache, the Jericho game folder, one generated TextWorld game."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitrl_bench.envs.text.textworld import make_game

REPO = Path(__file__).resolve().parents[2]
GAMES = Path(os.environ.get("JITRL_BENCH_GAMES") or REPO / ".." / "shared" / "jericho-games").resolve()
NO_GAMES = "Jericho game files not found: put them in ../shared/jericho-games or set $JITRL_BENCH_GAMES"


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache for a test about making what the cache holds from nothing (the suite shares a kept one)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("JITRL_BENCH_CACHE", str(cache))
    return cache


@pytest.fixture
def games_dir() -> Path:
    if not GAMES.is_dir():
        pytest.skip(NO_GAMES)
    return GAMES


@pytest.fixture(scope="session")
def tw_simple() -> Path:
    """tw-simple seed 7, generated into the suite's cache (once, then kept)."""
    return make_game("simple", 7)


@pytest.fixture(scope="session")
def standin_sites() -> Iterator[dict[str, str]]:
    """The local WebArena stand-ins (scripts/webarena_standin.py) on free ports: GitLab, shopping, the reset server."""
    from scripts.webarena_standin import ProfileGitLabStandIn, ResetServer, ShoppingStandIn, serve

    servers = [serve(ProfileGitLabStandIn, 0), serve(ShoppingStandIn, 0), serve(ResetServer, 0)]
    urls = [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    yield dict(zip(("gitlab", "shopping", "reset"), urls, strict=True))
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gitlab_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in GitLab's account, where `env.login=ui` looks for it."""
    from scripts.webarena_standin import PASSWORD, USERNAME

    monkeypatch.setenv("WA_GITLAB_USERNAME", USERNAME)
    monkeypatch.setenv("WA_GITLAB_PASSWORD", PASSWORD)
