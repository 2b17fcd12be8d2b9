"""The policy update. The KL-regularised objective  max_π E_π[Â] − β·KL(π ‖ π_θ)  has the closed form
π*(a|s) ∝ π_θ(a|s)·exp(Â(s,a)/β), which in logit space is exactly  z' = z + Â/β  (softmax is shift-invariant).
"""

from __future__ import annotations

import math

import numpy as np


def jitrl_logits(z: np.ndarray, advantage: np.ndarray, beta: float) -> np.ndarray:
    """z' = z + Â/β. β = ∞ returns z unchanged (the frozen policy), exactly."""
    z = np.asarray(z, dtype=np.float64)
    if math.isinf(beta):
        return z.copy()
    if beta <= 0:
        raise ValueError(f"agent.beta must be > 0 (or inf for the frozen policy), got {beta}")
    return z + np.asarray(advantage, dtype=np.float64) / beta


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(z / T); T = 0 gives the one-hot of the argmax (ties: first index)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.size == 0:
        return logits.copy()
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[int(np.argmax(logits))] = 1.0
        return probs
    x: np.ndarray = logits / temperature
    x = x - x.max()
    e = np.exp(x)
    out: np.ndarray = e / e.sum()
    return out


def select(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Act from softmax(z'/T): argmax at T = 0 (ties go to the first candidate), else a seeded sample."""
    if temperature == 0:
        return int(np.argmax(logits))
    return int(rng.choice(len(logits), p=softmax(logits, temperature)))


def paper_scores(p: np.ndarray, normalized_advantage: np.ndarray, w: float) -> np.ndarray:
    """The reference code's update: the advantage is added to probabilities, not logits, score = p + w·Ã.
    Kept as a named variant so `estimator=paper` reproduces it; it is not the KL closed form."""
    return np.asarray(p, dtype=np.float64) + w * np.asarray(normalized_advantage, dtype=np.float64)
