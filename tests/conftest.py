"""Fixtures shared across the suite: real games and the real embedder, loaded once per session."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per process while two workers share two cores (and what they start inherits it): torch's
    # default of a thread per core made 4+ spinning threads fight for 2, and the generation-heavy tests took 3-6x as
    # long (tests/agents/test_baselines.py's run: 515 s against 87 s; the paper smoke: 435 s against 79 s). Set before
    # torch is imported, as it reads the variable once.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    # vLLM's CPU engine binds its OpenMP threads to the cores it names (jitrl_bench/policies/server.py binds every
    # core by default): in the suite, one core per worker, so a server does not spin on the core the other worker uses.
    cores = sorted(os.sched_getaffinity(0))
    worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw") or 0)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", str(cores[worker % len(cores)]))

from jitrl_bench.memory.embed import Embedder, EmbedderConfig  # after the thread count is set
from tests.conftest_vllm import vllm_server  # noqa: F401  (the shared vLLM server, started by the first test using it)

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COLUMNS", "200")  # tables the tests read stay one row a line under long temporary paths

SHARED_GROUPS = {
    "vllm": ("tests/policies/test_vllm_run.py", "tests/policies/test_openai_client.py",
             "tests/policies/test_engine_evidence.py"),
    "ray": ("tests/run/cluster/test_cluster.py", "tests/envs/web/test_webarena_ray.py",
            "tests/sweep/test_sweep_submitit.py"),
}  # fmt: skip
"""Modules that share a process-wide resource (the session's vLLM server, `vllm_server`; Ray heads, which are
CPU-heavy) run in one pytest-xdist worker (`make test` runs two); every other module is a unit of its own, so its
module fixtures (a shared run read by several tests) are made once. Modules that start their own vLLM engine or server
are not in the group: their leftover checks count only their worker's processes (tests/processes.py)."""

HEAVY_FIRST = ("ray", "vllm", "tests/policies/test_served_path.py", "tests/policies/test_vllm.py",
               "tests/agents/test_baselines.py", "tests/test_reproduce.py")  # fmt: skip
"""Units handed out first, longest first (from `make test`'s durations: the Ray group about 10 minutes, the vLLM group
about 8, each module after it 3-5): xdist gives each worker the next unit in collection order, so a long unit collected
last would run alone at the end while the other worker idles."""


def _unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return next((name for name, modules in SHARED_GROUPS.items() if module in modules), module)


NEEDS = {
    "vllm": (*SHARED_GROUPS["vllm"], "tests/policies/test_served_path.py", "tests/policies/test_vllm.py"),
    "ray": SHARED_GROUPS["ray"],
}
"""Modules marked by what they start (`-m "not vllm and not ray"`: `make test-fast`, the inner loop)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {unit: i for i, unit in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(_unit(item.nodeid), len(rank)))  # stable: a module's order is kept
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        for mark, modules in NEEDS.items():
            if module in modules:
                item.add_marker(mark)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Schedule by module, with the modules of each `SHARED_GROUPS` entry as one unit. (xdist's own `loadgroup` does
    not group under pytest 9, whose node ids no longer come from the attribute it rewrites.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByModuleAndGroup(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return ByModuleAndGroup(config, log)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, a CI limit) stops the suite as Ctrl-C does: pytest then tears down the session fixtures (the
    vLLM server, engines, Ray heads, browsers) and atexit handlers run. Python's default for SIGTERM is to die at once,
    which left a session's vLLM server running for half an hour after a `timeout`."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)


ALLOWED_SKIPS = ("no live WebArena",)
"""The only skips CI accepts: tests of a real external deployment. Each needs its own host and says so."""


def _forbidden_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    """With CI=true a skip for something missing here (Chromium, the vLLM build, a game file, a tool) is a failure
    that names what is missing: a CI run that skips 135 tests and passes proves nothing about them."""
    if os.environ.get("CI") != "true" or not report.skipped:
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if not any(allowed in reason for allowed in ALLOWED_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"CI=true: this would skip, but CI must run it. {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _forbidden_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _forbidden_skip(outcome.get_result())


@pytest.fixture(scope="session", autouse=True)
def suite_cache() -> Iterator[Path]:
    """One cache for the whole suite, kept between runs: the converted SmolLM2, vLLM's compile cache and the generated
    TextWorld games are made once, not in every run. `$JITRL_BENCH_TEST_CACHE`, else ~/.cache/jitrl-bench-tests: never
    the user's own cache. Tests about making these from nothing ask for `isolated_cache` (tests/envs/conftest.py)."""
    cache = Path(os.environ.get("JITRL_BENCH_TEST_CACHE") or Path.home() / ".cache" / "jitrl-bench-tests")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JITRL_BENCH_CACHE", str(cache))
        games = Path(os.environ.get("JITRL_BENCH_GAMES") or REPO.parent / "shared" / "jericho-games")
        if games.is_dir():  # `make test` sets it; a bare `pytest` finds the folder beside the repository too
            patch.setenv("JITRL_BENCH_GAMES", str(games.resolve()))
        yield cache


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default embedder (all-MiniLM-L6-v2 from its PyPI package)."""
    return EmbedderConfig().make()
