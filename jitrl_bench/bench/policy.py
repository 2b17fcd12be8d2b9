"""`jitrl-bench bench policy`: what one decision's candidate scoring costs, per backend and mode, against the floor.

Rows (transformers, SmolLM2): `prefill` (the prompt alone), `floor` (one causal pass over the prompt and every
candidate's tokens: what scoring K candidates cannot beat), `one-pass` (the default scorer: the prompt, then all
candidates in one pass with a block attention mask), `shared-prefix` (K copies of the prompt's cache in one batch) and
`padded` (K full sequences); each with its ratio to the floor at the same K. `--full` adds the vLLM OpenAI server in
`score` and `choice` mode and episodes per minute at several concurrencies (a server start of about 100 s).
Every prompt differs at its start (a counter), so no cache of a previous call is reused.
"""

from __future__ import annotations

import os
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
from jitrl_bench.terminal import say

COLUMNS = ["backend", "mode", "K", "concurrency", "p50_ms", "cands_per_s", "episodes_per_min", "x_floor"]
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


def p50_ms(fn: Callable[[int], Any], repeats: int, warm_up: bool = True) -> float:
    if warm_up:  # the first calls of a shape are slower (allocations); the padded rows skip it: their calls are long
        fn(-1)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def transformers_rows(ks: list[int], repeats: int, dtype: str, console: Console) -> list[Row]:
    import torch

    from jitrl_bench.policies.hf import HFPolicyConfig

    policy = HFPolicyConfig(model="smollm2", dtype=dtype, prefix_cache=0).make()  # unique prompts: nothing to reuse
    backend = f"transformers-{dtype}"

    def forward(ids: list[int], logits: int) -> None:
        """One causal pass; the logits of the last `logits` positions only (what scoring reads)."""
        with torch.inference_mode():
            policy.model(input_ids=torch.tensor([ids]), use_cache=False, logits_to_keep=logits)

    rows = [row(backend, "prefill", 0, 1, p50_ms(lambda i: forward(policy.prompt_ids(prompt(i)), 1), repeats))]
    for k in ks:
        cands = candidates(k)
        tokens = [t for c in cands for t in policy.candidate_ids(c)]
        floor = p50_ms(floor_pass(forward, policy.prompt_ids, tokens), repeats)
        timed = {
            "floor": floor,
            "one-pass": p50_ms(bind(policy.score, cands), repeats),
            "shared-prefix": p50_ms(bind(policy.score_shared_prefix, cands), repeats),
            "padded": p50_ms(bind(policy.score_naive, cands), 1 if k >= 30 else max(2, repeats // 2), warm_up=False),
        }
        for mode, ms in timed.items():
            rows.append(row(backend, mode, k, 1, ms) | {"x_floor": round(ms / floor, 2)})
        console.print(f"{backend} K={k}: " + ", ".join(f"{m} {ms:.0f} ms" for m, ms in timed.items()))
    return rows


def floor_pass(
    forward: Callable[[list[int], int], None], prompt_ids: Callable[[Prompt], list[int]], tokens: list[int]
) -> Callable[[int], None]:
    """The floor of scoring: one causal pass over prompt i and every candidate token, reading their logits only."""
    return lambda i: forward(prompt_ids(prompt(i)) + tokens, len(tokens) + 1)


def vllm_rows(ks: list[int], repeats: int, concurrency: list[int], console: Console) -> list[Row]:
    from jitrl_bench.policies.openai import OpenAIPolicyConfig
    from jitrl_bench.policies.server import KEY_ENV, VLLMServer

    rows: list[Row] = []
    with VLLMServer("smollm2") as server:
        console.print(f"vLLM server up in {server.startup_s:.0f} s at {server.base_url}")
        os.environ[KEY_ENV] = server.api_key  # for this process's clients (policy.api_key_env), never written
        for mode in ("score", "choice"):
            policy = OpenAIPolicyConfig(base_url=server.base_url, model=server.model_name, mode=mode,
                                        tokenizer="smollm2", api_key_env=KEY_ENV).make()  # fmt: skip
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
    from jitrl_bench.config import compose_config, instantiate_group
    from jitrl_bench.contract import Agent, BuildContext, EnvConfig
    from jitrl_bench.policies.openai import OpenAIPolicyConfig
    from jitrl_bench.policies.server import KEY_ENV
    from jitrl_bench.run.episode import Provenance
    from jitrl_bench.run.local import run_all
    from jitrl_bench.run.rundir import RunDirectory
    from jitrl_bench.run.settings import RunConfig

    policy = OpenAIPolicyConfig(
        base_url=base_url, model=model, tokenizer="smollm2", max_concurrency=concurrency, api_key_env=KEY_ENV
    ).make()
    env: EnvConfig = instantiate_group("env", compose_config(["env=textworld", "env.seeds=[7]"]).env)
    run = RunConfig(episodes=episodes, max_steps=steps, concurrency=concurrency, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        agents: list[Agent] = [StaticConfig().build(BuildContext(policy, 1.0, GivenMemories()))]
        t0 = time.perf_counter()
        protocol = Provenance("textworld", model, "b", "b")
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
        "x_floor": "",
    }


def bench_policy(
    out: Path, ks: list[int], concurrency: list[int], repeats: int, dtype: str, vllm: bool, console: Console
) -> list[Row]:
    rows = transformers_rows(ks, repeats, dtype, console)
    if vllm:
        try:
            rows += vllm_rows(ks, repeats, concurrency, console)
        except UserError as e:
            say(console, str(e), "vLLM rows skipped:", "yellow")
    publish(rows, COLUMNS, out, "candidate scoring, ~500-token prompt", console)
    console.print(verdict(rows, dtype))
    return rows


def verdict(rows: list[Row], dtype: str) -> str:
    """The targets: one-pass scoring ≤ 1.3× the floor at K = 30 and 100 (and every ratio, as measured)."""
    backend = f"transformers-{dtype}"
    lines = []
    for r in rows:
        if r["backend"] == backend and r["mode"] == "one-pass":
            others = {p["mode"]: p["x_floor"] for p in rows if p["backend"] == backend and p["K"] == r["K"]}
            target = f" ({'met' if r['x_floor'] <= 1.3 else 'NOT met'}: ≤ 1.3)" if r["K"] >= 30 else ""
            lines.append(
                f"K={r['K']}: one-pass {r['x_floor']}× the floor{target}; shared-prefix {others['shared-prefix']}×, "
                f"padded {others['padded']}×"
            )
    return "\n".join(lines)
