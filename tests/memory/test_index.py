"""Exact search below the threshold, approximate above it, and the approximate index's recall."""

import faiss
import numpy as np
import pytest

from jitrl_bench.memory.index import IndexConfig, VectorIndex, normalize


def clustered(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Random entries with neighbour structure, like state embeddings: 2,000 random centres plus noise."""
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    return centres[rng.integers(0, 2000, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)


def test_exact_below_threshold_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 32)).astype(np.float32)
    index = VectorIndex(32, IndexConfig(exact_below=1000))
    index.add(np.arange(100, 600), x)
    brute = normalize(x) @ normalize(x[7])[0]
    ids, sims = index.search(x[7], 5)
    assert index.kind == "flat"
    assert list(ids) == list(np.argsort(-brute)[:5] + 100)
    np.testing.assert_allclose(sims, np.sort(brute)[::-1][:5], rtol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_switch_to_approximate_keeps_every_id(kind: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    index = VectorIndex(16, IndexConfig(approximate=kind, exact_below=500))
    for lo in range(0, 3000, 250):
        index.add(np.arange(lo, lo + 250), x[lo : lo + 250])
    assert index.kind == kind and len(index) == 3000
    for i in (0, 499, 1777, 2999):
        ids, sims = index.search(x[i], 1)
        assert ids[0] == i and sims[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_approximate_recall_at_1e5_entries() -> None:
    rng = np.random.default_rng(0)
    n, dim, k = 100_000, 384, 10
    x = clustered(n, dim, rng)
    queries = x[rng.integers(0, n, 200)] + 0.3 * rng.standard_normal((200, dim)).astype(np.float32)
    exact = faiss.IndexFlatIP(dim)
    exact.add(normalize(x))
    _, truth = exact.search(normalize(queries), k)
    index = VectorIndex(dim, IndexConfig())  # the default config: HNSW above 10^4 entries
    index.add(np.arange(n), x)
    assert index.kind == "hnsw"
    recall = np.mean([len(set(index.search(q, k)[0]) & set(t)) / k for q, t in zip(queries, truth, strict=True)])
    assert recall >= 0.95, recall
