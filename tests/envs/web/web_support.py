"""What the web tests share: one skip rule for a machine without the web extra or Chromium, and a scripted agent."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec

import pytest

from jitrl_bench.agents.base import new_context
from jitrl_bench.contract import EpisodeContext, FinishedEpisode, StepView, Usage
from jitrl_bench.errors import UserError
from jitrl_bench.records import Decision, EpisodeRecord


def require_browser(*modules: str) -> None:
    """Skip the calling test module unless `modules` and a Chromium are there (call it after the imports, which
    `pytest.importorskip` the web extra before)."""
    for module in modules:
        if find_spec(module) is None:
            pytest.skip(f"needs {module}: make setup (the web extra)", allow_module_level=True)
    from jitrl_bench.envs.web.browser import chromium_executable

    try:
        chromium_executable()
    except UserError as missing:
        pytest.skip(str(missing), allow_module_level=True)


class ScriptedAgent:
    """Takes the candidates with the given keys in order (`first`, by task), then `last` (the subject is the grading,
    not the agent)."""

    name = "scripted"
    learns = False

    def __init__(self, first: dict[str, list[str]], last: str) -> None:
        self.first = first
        self.last = last

    def start(self, task: str, episode: int, uid: str, seed: int) -> EpisodeContext:
        return new_context(task, episode, uid, seed)

    def act(self, ctx: EpisodeContext, view: StepView) -> Decision:
        keys, plan = view.keys, self.first.get(ctx.task, [])
        index = keys.index(plan[len(ctx.history)] if len(ctx.history) < len(plan) else self.last)
        return Decision(view.actions[index], index, view.actions, [0.0] * len(keys))

    def finish(self, ctx: EpisodeContext, episode: FinishedEpisode, rewards: Sequence[float]) -> Usage:
        return Usage()

    def restore(self, finished: Sequence[EpisodeRecord]) -> None:
        return None
