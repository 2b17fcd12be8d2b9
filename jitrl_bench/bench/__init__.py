"""Benchmarks (`jitrl-bench bench ...`): speed and memory goals are measured here, never asserted in timed tests."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def publish(rows: Sequence[Mapping[str, Any]], columns: list[str], out: Path, title: str, console: Console) -> None:
    """Write the rows as CSV (the benchmark's record under results/bench/) and print them as a table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    table = Table(title=f"{title} → {out}")
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
