"""The paper's lexical re-rank, computed by hand."""

from collections import Counter

import numpy as np
import pytest

from jitrl_bench.jitrl.retrieval import LexicalConfig, lexical_rerank, multiset_jaccard, ngrams, retrieve, tokens
from jitrl_bench.memory.store import Experience, ExperienceMemory, Neighbour


def nb(i: int, ret: float = 0.0) -> Neighbour:
    return Neighbour(id=i, similarity=0.5, action_key="a", ret=ret, step=0)


def test_tokens_drop_punctuated_words_like_the_reference() -> None:
    assert tokens("Open the Door.\nNorth of House") == ["open", "the", "north", "of", "house"]


def test_multiset_jaccard_counts_repeats() -> None:
    a, b = Counter({"x": 2, "y": 1}), Counter({"x": 1, "z": 1})
    assert multiset_jaccard(a, b) == pytest.approx(1 / 4)  # min: x1 ; max: x2 y1 z1
    assert multiset_jaccard(Counter(), Counter()) == 1.0


def test_ngrams_fall_back_to_unigrams_for_short_texts() -> None:
    assert ngrams("a b c d e", 4) == Counter({"a b c d": 1, "b c d e": 1})
    assert ngrams("a b", 4) == Counter({"a": 1, "b": 1})


def test_threshold_decays_and_high_scores_are_all_kept() -> None:
    cfg = LexicalConfig(unigram_fields=["summary"], ngram_fields=["observation"], n=1)
    query = {"summary": "a b c d", "observation": "p q r s"}
    same = {"summary": "a b c d", "observation": "p q r s"}  # S = 1.0
    close = {"summary": "a b c d", "observation": "p q r x"}  # S = 0.3 + 0.7 * 3/5 = 0.72
    pool = [(nb(i), same) for i in range(3)] + [(nb(9, ret=5.0), close)]
    at_start = lexical_rerank(query, pool, step=0, k=2, cfg=cfg)
    assert [n.id for n in at_start] == [0, 1, 2]  # all three > 0.98 are kept even though k = 2
    cfg.threshold_end = 0.7
    late = lexical_rerank(query, pool, step=20, k=4, cfg=cfg)  # θ(20) = 0.7: the close one passes
    assert [n.id for n in late][-1] == 9 and late[-1].similarity == pytest.approx(0.72)
    assert lexical_rerank(query, pool, step=10, k=4, cfg=cfg)[-1].id != 9  # θ(10) = 0.825


def test_medium_entries_fill_to_k_by_score_then_return() -> None:
    cfg = LexicalConfig(unigram_fields=["s"], ngram_fields=["o"], n=1, threshold_start=0.5, threshold_end=0.5)
    query = {"s": "a b", "o": "c d e f g h i j k l"}
    near = {"s": "a b", "o": "c d e f g h i j k x"}  # S = 0.3 + 0.7 * 9/11
    pool = [(nb(1, ret=1.0), near), (nb(2, ret=3.0), near), (nb(3, ret=2.0), near)]
    picked = lexical_rerank(query, pool, step=0, k=2, cfg=cfg)
    assert [n.id for n in picked] == [2, 3]


def test_retrieve_with_lexical_rerank_reads_memory_fields() -> None:
    memory = ExperienceMemory(None, 8, gamma=0.9)
    texts = ["you are in the kitchen", "you are in the garden", "you are in the kitchen"]
    exps = [
        Experience(state=t, fields={"observation": t}, action="a", action_key="a", rewards=[float(i)], episode="e",
                   task="t", step=i, success=False)
        for i, t in enumerate(texts)
    ]  # fmt: skip
    memory.add(exps, np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))
    cfg = LexicalConfig(unigram_fields=["observation"], ngram_fields=["observation"], n=1)
    got = retrieve(
        memory, np.ones(8, np.float32), {"task": "t", "observation": "you are in the kitchen"}, 0, 10, -1, cfg
    )
    assert sorted(n.id for n in got) == [0, 2]
