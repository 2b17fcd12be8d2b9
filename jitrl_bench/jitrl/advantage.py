"""Advantage estimates Â(s,a) = Q̂(s,a) − V̂(s) from the returns of retrieved neighbours.

Two estimators:
- `clean_advantage` (default): similarity-weighted means, exact zero for actions no neighbour took.
- `paper_advantage`: the authors' reference rules, reproduced as they are (see each step's comment).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jitrl_bench.memory.store import Neighbour


@dataclass(frozen=True)
class Advantage:
    keys: list[str]
    """Action keys the values refer to: the candidates, then (paper only) memory actions added as candidates."""
    values: np.ndarray
    """Â per key (the paper estimator returns them normalised, see `paper_advantage`)."""
    q: dict[str, float] = field(default_factory=dict)
    v: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    """How many neighbours took each action."""
    exploration: float | None = None
    """The paper estimator's λ (probability that an unseen action gets the optimism bonus)."""


def clean_advantage(candidate_keys: Sequence[str], neighbours: Sequence[Neighbour], bonus: float = 0.0) -> Advantage:
    """Similarity-weighted estimates over the k neighbours N(s), with weights w_i = max(sim_i, 0):

        V̂(s)   = Σ_i w_i G_i / Σ_i w_i
        Q̂(s,a) = Σ_{i: a_i = a} w_i G_i / Σ_{i: a_i = a} w_i
        Â(s,a) = Q̂(s,a) − V̂(s)   if some neighbour took a, else 0 (the frozen policy decides)
                 + bonus / sqrt(1 + n_a)   (optional count-based optimism, n_a = neighbours that took a)

    Weighting by similarity lets the closest states count most; with equal similarities it is the paper's plain mean.
    (If every similarity is ≤ 0 the weights fall back to equal.)
    """
    keys = list(candidate_keys)
    counts: dict[str, int] = defaultdict(int)
    for nb in neighbours:
        counts[nb.action_key] += 1
    values = np.array([bonus / math.sqrt(1 + counts.get(k, 0)) for k in keys], dtype=np.float64)
    if not neighbours:
        return Advantage(keys, values, counts=dict(counts))
    weights = np.array([max(nb.similarity, 0.0) for nb in neighbours])
    if weights.sum() <= 0:
        weights = np.ones(len(neighbours))
    returns = np.array([nb.ret for nb in neighbours])
    v = float(weights @ returns / weights.sum())
    q: dict[str, float] = {}
    for key in counts:
        mask = np.array([nb.action_key == key for nb in neighbours])
        q[key] = float(weights[mask] @ returns[mask] / weights[mask].sum())
    for j, key in enumerate(keys):
        if key in q:
            values[j] += q[key] - v
    return Advantage(keys, values, q=q, v=v, counts=dict(counts))


def adaptive_exploration(
    neighbours: Sequence[Neighbour], rho: float = 0.65, low: float = 0.05, high: float = 0.8
) -> float:
    """The reference code's Jericho λ: confident, consistently rewarded actions lower the exploration probability.

    For each action taken by n ≥ 2 neighbours, with mean m and population std s of its returns:
        conf = (max(0, m) / (1 + s/m))^ρ · max(n/4, 1)   (0 when m ≤ 0)
    λ = clip(1 / (1 + max conf), low, high); λ = high when no action has two samples.
    """
    by_action: dict[str, list[float]] = defaultdict(list)
    for nb in neighbours:
        by_action[nb.action_key].append(nb.ret)
    best = None
    for returns in by_action.values():
        if len(returns) < 2:
            continue
        m, s = float(np.mean(returns)), float(np.std(returns))
        conf = (m / (1 + s / m)) ** rho * max(len(returns) / 4, 1) if m > 0 else 0.0
        best = conf if best is None else max(best, conf)
    if best is None:
        return high
    return float(min(max(1 / (1 + best), low), high))


def paper_advantage(
    candidate_keys: Sequence[str],
    neighbours: Sequence[Neighbour],
    *,
    exploration: float,
    rng: random.Random,
    alpha: float = 1.0,
    add_memory_actions: bool = True,
    positive_only: bool = True,
    groundable: Callable[[str], bool] | None = None,
) -> Advantage:
    """The reference code's `update_scores`, rule by rule. Returns normalised advantages Ã over `keys`.

    1. Q̂(a) = mean G of the neighbours that took a (no similarity weights); V̂ = mean G over all neighbours.
    2. Memory actions that are not candidates are appended as candidates when their mean return is > 0 (the
       reference's Jericho rule; `positive_only=False` is its web rule) and, given `groundable`, only those it
       accepts (on the web, an element with that role and label on the current page).
    3. Each unseen candidate: with probability λ (`exploration`) Q̂ = V̂ + α/n (n = neighbours retrieved), else Q̂ = 0.
       If any unseen candidate existed, V̂ becomes the mean of Q̂ over every action in the table (memory actions
       that were not added included).
    4. Â = Q̂ − V̂, divided by the largest positive Â over the table, or by |min Â| when none is positive.
    No neighbours: all zeros, and the base policy's choice stands.
    """
    keys = list(candidate_keys)
    if not neighbours:
        return Advantage(keys, np.zeros(len(keys)), exploration=exploration)
    samples: dict[str, list[float]] = defaultdict(list)
    for nb in neighbours:
        samples[nb.action_key].append(nb.ret)
    q = {key: float(np.mean(returns)) for key, returns in samples.items()}
    v = float(np.mean([nb.ret for nb in neighbours]))
    if add_memory_actions:
        keys += [
            key
            for key in samples
            if key not in candidate_keys
            and (q[key] > 0 or not positive_only)
            and (groundable is None or groundable(key))
        ]
    unseen = [key for key in candidate_keys if key not in q]
    for key in unseen:
        q[key] = v + alpha / len(neighbours) if rng.random() < exploration else 0.0
    if unseen:
        v = float(np.mean(list(q.values())))
    raw = {key: value - v for key, value in q.items()}
    top = max(raw.values())
    scale = top if top > 0 else abs(min(raw.values()))
    values = np.array([raw[key] / scale if scale > 0 else 0.0 for key in keys], dtype=np.float64)
    return Advantage(keys, values, q=q, v=v, counts={k: len(s) for k, s in samples.items()}, exploration=exploration)


def paper_weight(episodes_done: int, start: float = 1.0, end: float = 1.5, ramp: int = 50) -> float:
    """Weight w of Ã in p + w·Ã: the reference code grows it linearly from 1.0 to 1.5 over 50 episodes (Jericho)."""
    return start + (end - start) * min(episodes_done / ramp, 1.0) if ramp > 0 else end
