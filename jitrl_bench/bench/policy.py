"""`jitrl-bench bench policy`: what one decision's candidate scoring costs, per backend and mode.

Rows: transformers prefill alone (the reference cost of reading the prompt), transformers shared-prefix scoring (one
prefill whose KV cache serves all K candidates), transformers padded (K full sequences, the naive way), and — when vLLM
is installed — the vLLM OpenAI server in `score` and `choice` mode, plus episodes per minute at several concurrencies.
Every prompt differs (a counter is appended), so no cache of a previous call is reused.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from jitrl_bench.bench import publish
from jitrl_bench.contract import Prompt
from jitrl_bench.errors import UserError
from jitrl_bench.policies.openai import OpenAIPolicy

COLUMNS = ["backend", "mode", "K", "concurrency", "p50_ms", "cands_per_s", "episodes_per_min"]
Row = dict[str, Any]
ROOM = (
    "You are in a bedroom. A king-size bed stands against the wall, next to a chest of drawers and an antique trunk. "
    "There is a closed wooden door leading east. On the bed you see a pillow and an old note. The drawer is closed. "
)
ACTIONS = ["open", "close", "examine", "take", "drop", "push", "pull", "read", "unlock", "look under"]
THINGS = ["wooden door", "antique trunk", "chest drawer", "king-size bed", "old key", "pillow", "note", "lamp"]


def prompt(i: int, tokens: int = 500) -> Prompt:
    """A text-game prompt of about `tokens` tokens (about 4 characters a token), unique per i."""
    body = (ROOM * (tokens * 4 // len(ROOM) + 1))[: tokens * 4]
    return Prompt.chat("You are playing a text adventure game. Reply with the next command.", f"[{i}] {body}")


def candidates(k: int) -> list[str]:
    return [f"{ACTIONS[i % len(ACTIONS)]} {THINGS[(i // len(ACTIONS) + i) % len(THINGS)]}" for i in range(k)]


def p50_ms(fn: Callable[[int], Any], repeats: int) -> float:
    fn(-1)  # warm-up
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def transformers_rows(ks: list[int], repeats: int, dtype: str, console: Console) -> list[Row]:
    import torch

    from jitrl_bench.policies.hf import HFPolicyConfig

    policy = HFPolicyConfig(model="smollm2", dtype=dtype).make()
    rows: list[Row] = []

    def prefill(i: int) -> None:
        ids = torch.tensor([policy.prompt_ids(prompt(i))])
        with torch.inference_mode():
            policy.model(input_ids=ids, use_cache=True)

    rows.append(row(f"transformers-{dtype}", "prefill", 0, 1, p50_ms(prefill, repeats)))
    for k in ks:
        cands = candidates(k)
        shared = p50_ms(bind(policy.score, cands), repeats)
        rows.append(row(f"transformers-{dtype}", "shared-prefix", k, 1, shared))
        padded = p50_ms(bind(policy.score_naive, cands), max(2, repeats // 2))
        rows.append(row(f"transformers-{dtype}", "padded", k, 1, padded))
        console.print(f"transformers {dtype} K={k}: shared-prefix {shared:.0f} ms, padded {padded:.0f} ms")
    return rows


def vllm_rows(ks: list[int], repeats: int, concurrency: list[int], console: Console) -> list[Row]:
    from jitrl_bench.policies.openai import OpenAIPolicyConfig
    from jitrl_bench.policies.server import VLLMServer

    rows: list[Row] = []
    with VLLMServer("smollm2") as server:
        console.print(f"vLLM server up in {server.startup_s:.0f} s at {server.base_url}")
        for mode in ("score", "choice"):
            policy = OpenAIPolicyConfig(base_url=server.base_url, model=server.model_name, mode=mode,
                                        tokenizer="smollm2").make()  # fmt: skip
            for k in ks:
                if mode == "choice" and k > 20:
                    continue  # one decoding step reads at most 20 option log-probs
                rows.append(row("vllm-server", mode, k, 1, p50_ms(server_call(policy, mode, candidates(k)), repeats)))
        for c in concurrency:
            rows.append(episodes_per_minute(server.base_url, server.model_name, c))
            console.print(f"vLLM server concurrency {c}: {rows[-1]['episodes_per_min']} episodes/min")
    return rows


def bind(score: Callable[[Prompt, list[str]], Any], cands: list[str]) -> Callable[[int], Any]:
    return lambda i: score(prompt(i), cands)


def server_call(policy: OpenAIPolicy, mode: str, cands: list[str]) -> Callable[[int], Any]:
    if mode == "score":
        return lambda i: policy.score(prompt(i), cands)
    bias = np.zeros(len(cands))
    return lambda i: policy.choose(prompt(i), cands, bias, 1.0, i)


def episodes_per_minute(base_url: str, model: str, concurrency: int, episodes: int = 8, steps: int = 8) -> Row:
    """Static-agent TextWorld episodes through the runner against one server, `concurrency` in flight."""
    import tempfile

    from rich.console import Console as Quiet

    from jitrl_bench.agents.recall import GivenMemories
    from jitrl_bench.agents.static import StaticConfig
    from jitrl_bench.contract import Agent, BuildContext
    from jitrl_bench.envs.textworld import TextWorldConfig
    from jitrl_bench.policies.openai import OpenAIPolicyConfig
    from jitrl_bench.rundir import RunDirectory
    from jitrl_bench.runner import Protocol, RunConfig, run_all

    policy = OpenAIPolicyConfig(base_url=base_url, model=model, tokenizer="smollm2", max_concurrency=concurrency).make()
    env = TextWorldConfig(seeds=[7])
    run = RunConfig(episodes=episodes, max_steps=steps, concurrency=concurrency, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        agents: list[Agent] = [StaticConfig().build(BuildContext(policy, 1.0, GivenMemories()))]
        t0 = time.perf_counter()
        protocol = Protocol("textworld", model, "b", "b")
        run_all(RunDirectory(Path(folder)), env.task_names(), env.make, agents, run, protocol, Quiet(quiet=True))
        wall = time.perf_counter() - t0
    out = row("vllm-server", "episodes", 0, concurrency, wall * 1000 / episodes)
    out["episodes_per_min"] = round(episodes * 60 / wall, 2)
    return out


def row(backend: str, mode: str, k: int, concurrency: int, ms: float) -> Row:
    return {
        "backend": backend,
        "mode": mode,
        "K": k,
        "concurrency": concurrency,
        "p50_ms": round(ms, 1),
        "cands_per_s": round(k / ms * 1000, 1) if k else "",
        "episodes_per_min": "",
    }


def bench_policy(
    out: Path, ks: list[int], concurrency: list[int], repeats: int, dtype: str, vllm: bool, console: Console
) -> list[Row]:
    rows = transformers_rows(ks, repeats, dtype, console)
    if vllm:
        try:
            rows += vllm_rows(ks, repeats, concurrency, console)
        except UserError as e:
            console.print(f"[yellow]vLLM rows skipped:[/yellow] {e}")
    publish(rows, COLUMNS, out, "candidate scoring, ~500-token prompt", console)
    console.print(verdict(rows, dtype))
    return rows


def verdict(rows: list[Row], dtype: str) -> str:
    """The issue's targets: shared-prefix K candidates ≤ 1.5× one prefill, and ≥ 10× faster than padded."""
    backend = f"transformers-{dtype}"
    prefill = next(r["p50_ms"] for r in rows if r["backend"] == backend and r["mode"] == "prefill")
    lines = []
    for r in rows:
        if r["backend"] == backend and r["mode"] == "shared-prefix":
            padded = next(
                p["p50_ms"] for p in rows if p["backend"] == backend and p["mode"] == "padded" and p["K"] == r["K"]
            )
            ratio, speedup = r["p50_ms"] / prefill, padded / r["p50_ms"]
            lines.append(
                f"K={r['K']}: shared-prefix = {ratio:.2f}× prefill ({'met' if ratio <= 1.5 else 'NOT met'}: ≤ 1.5), "
                f"{speedup:.1f}× faster than padded ({'met' if speedup >= 10 else 'NOT met'}: ≥ 10)"
            )
    return "\n".join(lines)
