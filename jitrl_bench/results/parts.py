"""Tables of a run whose rows come from several splits or phases (`run.protocol`): each table is made per part, and
the part's name becomes its first column, so a train number never mixes with a test number."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from jitrl_bench.run.protocols import PARTS

COLUMNS = tuple(dict.fromkeys(column for column, _ in PARTS.values()))
"""`split` (train_test) and `phase` (stream)."""


def per_part(episodes: pd.DataFrame, table: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """`table(episodes)`, or, when the episodes carry a part column, `table` of each part with that column first."""
    column = next((c for c in COLUMNS if c in episodes), None)
    if column is None:
        return table(episodes)
    frames = []
    for value in dict.fromkeys(episodes[column]):
        frame = table(episodes[episodes[column] == value].drop(columns=[column]))
        frame.insert(0, column, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else table(episodes)
