"""Returns. G_t = Σ_u γ^u r_{t+u}, computed when memory is read, so γ never gets baked in."""

from __future__ import annotations

from collections.abc import Sequence


def discounted_return(rewards: Sequence[float], gamma: float, zero_fill: bool = False) -> float:
    """G = r_0 + γ r_1 + γ² r_2 + ... (Horner's rule, from the end).

    `zero_fill` is the reference code's quirk: each zero reward counts as r_0, the step's own reward."""
    g = 0.0
    own = float(rewards[0]) if rewards else 0.0
    for r in reversed(rewards):
        g = (float(r) if r or not zero_fill else own) + gamma * g
    return g


def rewards_to_go(rewards: Sequence[float]) -> list[list[float]]:
    """For each step t, the list r_t..r_T that memory stores with that step."""
    return [list(map(float, rewards[t:])) for t in range(len(rewards))]
