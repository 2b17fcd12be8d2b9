"""The run's embedder: each state text is embedded once per run, and texts that episodes in flight ask for at the same
time reach the model in one call; every thread counts what it asked for."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from jitrl_bench.memory.embed import CachedEmbedder, HashingEmbedder, embedded_in_this_thread


class CountingHashing(HashingEmbedder):
    """The real hashing embedder, recording the batches it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return super().encode(texts)


def test_a_state_is_embedded_once_per_run() -> None:
    inner = CountingHashing()
    cached = CachedEmbedder(inner)
    before = embedded_in_this_thread()
    first = cached.encode(["west of house", "kitchen", "west of house"])
    again = cached.encode(["kitchen", "attic"])
    assert inner.calls == [["west of house", "kitchen"], ["attic"]]
    assert embedded_in_this_thread() - before == 3
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_allclose(again, HashingEmbedder().encode(["kitchen", "attic"]))


def test_texts_asked_for_at_the_same_time_reach_the_model_in_one_call() -> None:
    inner = CountingHashing()
    cached = CachedEmbedder(inner)
    texts = [f"room {i}" for i in range(4)]
    got: dict[int, np.ndarray] = {}
    counted: dict[int, int] = {}

    def ask(i: int) -> None:
        before = embedded_in_this_thread()
        got[i] = cached.encode([texts[i]])[0]
        counted[i] = embedded_in_this_thread() - before

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    with cached.batcher.engine:  # the model is busy: four episodes' requests queue up
        for thread in threads:
            thread.start()
        deadline = time.time() + 30
        while cached.batcher.waiting < 4 and time.time() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert len(inner.calls) == 1 and sorted(inner.calls[0]) == texts
    assert counted == dict.fromkeys(range(4), 1)  # each episode is charged its own text, not the batch
    for i, text in enumerate(texts):
        np.testing.assert_allclose(got[i], HashingEmbedder().encode([text])[0])


@pytest.mark.slow
def test_minilm_through_transformers_equals_its_sentence_transformers_pipeline() -> None:
    """The default embedder (MiniLMEmbedder) against sentence-transformers' own pipeline on the same folder: texts of
    every length (one past the 256-token cut), empty, non-ASCII, and more than one batch of 64, in shuffled order.
    float32 through the same kernels: agreement within 1e-5 (measured 9e-8); a wrong pooling (CLS token instead of
    the mean), no mask in the mean or a missing normalisation moves vectors by more than 0.05 (mutants: tried)."""
    from jitrl_bench.memory.embed import MiniLMEmbedder, SentenceTransformerEmbedder

    texts = ["You are in a kitchen. There is a red key.", "look", "", "go north " * 200, "Ünïcödé ✓ text"]
    texts = [f"{t} {i}" if i % 3 else t for i, t in enumerate(texts * 15)]
    ours, theirs = MiniLMEmbedder().encode(texts), SentenceTransformerEmbedder().encode(texts)
    assert ours.shape == theirs.shape == (len(texts), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
