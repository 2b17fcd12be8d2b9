"""What every env adapter shares: the Gymnasium side of the contract.

Each adapter is a Gymnasium env with text observations and text actions (`reset(seed=...) -> (obs, info)`,
`step(action) -> (obs, reward, terminated, truncated, info)`), and it also hands out a typed `StepView` of the current
step (`view()`, see `jitrl_bench/contract/`), which is what the runner and the agents read. `info` is that view as a
plain dict, for users of the envs outside the runner.

`reward` is the score delta of the step. `terminated` means the game ended (won or lost); truncation by a step budget
is the runner's job, adapters never truncate on their own (`end_episode()` ends a cut episode).
"""

from __future__ import annotations

import gymnasium as gym

from jitrl_bench.text import TEXT_CHARSET


def text_space(max_length: int = 100_000) -> gym.spaces.Text:
    """A Text space that accepts ordinary printable text (gymnasium's default charset is alphanumeric only)."""
    return gym.spaces.Text(max_length=max_length, min_length=0, charset="".join(sorted(TEXT_CHARSET)))
