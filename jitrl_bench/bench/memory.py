"""`jitrl-bench bench memory`: the per-decision overhead JitRL adds to a policy call, and what an entry costs in RAM.

A decision = retrieve k = 10 neighbours + Â for K = 10 candidates + z' = z + Â/β + select. Embedding the state is
timed on its own (the real MiniLM embedder), since it does not depend on the memory size. Entries are synthetic but
shaped like real ones: clustered 384-d embeddings (states recur), 40 distinct actions, ~10-step reward tails,
~300-character state fields; queries are perturbed copies of stored states, as when an agent revisits a state.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from jitrl_bench import terminal
from jitrl_bench.bench import publish
from jitrl_bench.jitrl.advantage import clean_advantage
from jitrl_bench.jitrl.retrieval import retrieve
from jitrl_bench.jitrl.update import jitrl_logits, select
from jitrl_bench.memory.index import IndexConfig
from jitrl_bench.memory.store import Experience, ExperienceMemory

DIM, K_CANDIDATES, K_NEIGHBOURS = 384, 10, 10
COLUMNS = ["entries", "index", "p50_ms", "p99_ms", "bytes_per_entry", "build_s", "embed_ms"]


def synthetic(n: int, rng: np.random.Generator, clusters: int = 2000) -> tuple[list[Experience], np.ndarray]:
    centers = rng.standard_normal((clusters, DIM)).astype(np.float32)
    vectors = centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    actions = [f"take the item number {i}" for i in range(40)]
    filler = "You are in a small room with a wooden table, a closed door to the north and a lamp. " * 4
    experiences = [
        Experience(
            state=filler[:300],
            fields={"location": filler[:150], "inventory": "a lamp, a key", "observation": filler[:150]},
            action=actions[i % 40],
            action_key=actions[i % 40],
            rewards=[float(r) for r in rng.integers(-1, 2, 10)],
            episode=f"ep{i // 20}",
            task="bench",
            step=i % 20,
            success=False,
        )
        for i in range(n)
    ]
    return experiences, vectors


def measure(n: int, queries: int, index: IndexConfig, seed: int = 0) -> dict[str, float | int | str]:
    rng = np.random.default_rng(seed)
    experiences, vectors = synthetic(n, rng)
    gc.collect()
    tracemalloc.start()
    memory = ExperienceMemory(None, DIM, gamma=0.9, partition_by=("task",), index=index)
    start = time.perf_counter()
    for lo in range(0, n, 20_000):
        memory.add(experiences[lo : lo + 20_000], vectors[lo : lo + 20_000])
    build_s = time.perf_counter() - start
    del experiences
    gc.collect()
    python_bytes = tracemalloc.get_traced_memory()[0]  # columns and fields the memory keeps in RAM
    tracemalloc.stop()
    # faiss lives outside Python's allocator: count its structures beyond the raw vectors (e.g. HNSW links).
    index_bytes = sum(index.overhead_bytes() for index in memory.indexes())
    bytes_per_entry = (python_bytes + max(index_bytes, 0)) / n
    candidates = [f"take the item number {i}" for i in range(K_CANDIDATES)]
    where = {"task": "bench"}
    times = []
    for q in range(queries):
        query = vectors[rng.integers(0, n)] + 0.3 * rng.standard_normal(DIM).astype(np.float32)
        z = rng.standard_normal(K_CANDIDATES)
        t0 = time.perf_counter()
        neighbours = retrieve(memory, query, where, step=q % 20, k=K_NEIGHBOURS, threshold=-1.0)
        adv = clean_advantage(candidates, neighbours)
        select(jitrl_logits(z, adv.values, beta=0.5), 1.0, rng)
        times.append(time.perf_counter() - t0)
    ms = np.array(times[min(10, queries // 10) :]) * 1000  # drop warm-up
    kind = memory.indexes()[0].kind
    return {
        "entries": n,
        "index": kind,
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "bytes_per_entry": int(bytes_per_entry),
        "build_s": round(build_s, 2),
    }


def embed_ms(repeats: int = 50) -> float:
    from jitrl_bench.memory.embed import EmbedderConfig

    embedder = EmbedderConfig().make()
    text = "location: West of House\ninventory: a leaflet\nobservation: You are standing in an open field."
    embedder.encode([text])
    t0 = time.perf_counter()
    for _ in range(repeats):
        embedder.encode([text])
    return round((time.perf_counter() - t0) / repeats * 1000, 2)


def bench_memory(
    sizes: list[int], out: Path, queries: int = 300, console: Console | None = None
) -> list[dict[str, float | int | str]]:
    console = console or terminal.console()
    index = IndexConfig()
    embedding = embed_ms()
    rows = []
    for n in track(sizes, description="memory sizes", console=console):
        row = measure(n, queries, index)
        row["embed_ms"] = embedding
        rows.append(row)
    publish(rows, COLUMNS, out, f"per-decision overhead (K={K_CANDIDATES}, k={K_NEIGHBOURS}, {DIM}-d)", console)
    return rows
