"""Neighbours N(s) of the current state: cosine top-k from memory, optionally re-ranked lexically as in the paper."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from jitrl_bench.checks import Checked, at_least, between
from jitrl_bench.memory.store import ExperienceMemory, Neighbour


@dataclass
class LexicalConfig(Checked):
    """The paper's lexical re-rank: embedding recall, then S = 0.3·J(unigrams) + 0.7·J(4-grams), multiset Jaccard."""

    recall: int = 100
    """Embedding candidates re-ranked."""
    unigram_fields: list[str] = field(default_factory=lambda: ["summary", "inventory"])
    """State fields compared by unigram Jaccard (the paper: the LLM summary). No such field: the whole state."""
    ngram_fields: list[str] = field(default_factory=lambda: ["location", "observation"])
    """State fields compared by word n-gram Jaccard (the paper: `look` text + observation)."""
    unigram_weight: float = 0.3
    ngram_weight: float = 0.7
    n: int = 4
    threshold_start: float = 0.95
    """Threshold θ at step 0; it decays linearly to `threshold_end` by step `decay_steps`."""
    threshold_end: float = 0.85
    decay_steps: int = 20
    keep_above: float = 0.98
    """Entries scoring above this are all kept, even beyond k."""

    def check(self) -> None:
        at_least("recall", self.recall, 1)
        at_least("unigram_weight", self.unigram_weight, 0.0)
        at_least("ngram_weight", self.ngram_weight, 0.0)
        at_least("n", self.n, 1)
        between("threshold_start", self.threshold_start, 0.0, 1.0, "a Jaccard score")
        between("threshold_end", self.threshold_end, 0.0, 1.0, "a Jaccard score")
        at_least("decay_steps", self.decay_steps, 0)
        between("keep_above", self.keep_above, 0.0, 1.0, "a Jaccard score")


def retrieve(
    memory: ExperienceMemory,
    query: np.ndarray,
    where: dict[str, str],
    step: int,
    k: int,
    threshold: float,
    lexical: LexicalConfig | None = None,
) -> list[Neighbour]:
    """N(s): cosine top-k ≥ threshold inside the memory partition named by `where`, or (lexical) the paper's selection
    over the top-`recall` by embedding."""
    if lexical is None:
        return memory.search(query, k, threshold, where)
    pool = memory.search(query, lexical.recall, -1.0, where)
    return lexical_rerank(where, [(nb, memory.fields(nb.id)) for nb in pool], step, k, lexical)


def lexical_rerank(
    fields: dict[str, str], pool: list[tuple[Neighbour, dict[str, str]]], step: int, k: int, cfg: LexicalConfig
) -> list[Neighbour]:
    """S = w1·J(unigrams) + w2·J(n-grams); keep S ≥ θ(step); all above `keep_above`, then fill to k by (S, G)."""
    theta = cfg.threshold_start - (cfg.threshold_start - cfg.threshold_end) * min(step / max(cfg.decay_steps, 1), 1.0)
    q_uni = ngrams(_text(fields, cfg.unigram_fields), 1)
    q_n = ngrams(_text(fields, cfg.ngram_fields), cfg.n)
    scored = []
    for nb, nb_fields in pool:
        s = cfg.unigram_weight * multiset_jaccard(q_uni, ngrams(_text(nb_fields, cfg.unigram_fields), 1))
        s += cfg.ngram_weight * multiset_jaccard(q_n, ngrams(_text(nb_fields, cfg.ngram_fields), cfg.n))
        if s >= theta:
            scored.append(replace(nb, similarity=s))
    scored.sort(key=lambda nb: (nb.similarity, nb.ret), reverse=True)
    high = [nb for nb in scored if nb.similarity > cfg.keep_above]
    medium = [nb for nb in scored if nb.similarity <= cfg.keep_above]
    return high + medium[: max(k - len(high), 0)]


def tokens(text: str) -> list[str]:
    """Lower-case words; tokens with punctuation attached (e.g. "door.") are dropped, as in the reference code."""
    return [t for t in text.lower().replace("\n", " ").split() if t.isalnum()]


def ngrams(text: str, n: int) -> Counter[str]:
    """Multiset of word n-grams (unigrams when the text is shorter than n)."""
    words = tokens(text)
    if len(words) < n:
        n = 1
    return Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def multiset_jaccard(a: Counter[str], b: Counter[str]) -> float:
    """Σ min(count) / Σ max(count); two empty texts are identical (1.0)."""
    union = sum((a | b).values())
    return sum((a & b).values()) / union if union else 1.0


def _text(fields: dict[str, str], names: list[str]) -> str:
    present = [fields[name] for name in names if fields.get(name)]
    return "\n".join(present) if present else "\n".join(v for _, v in sorted(fields.items()))
