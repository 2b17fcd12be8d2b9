"""`jitrl-bench export RUN... --format parquet`: the tables of `open_run` as Parquet files that DuckDB, polars or
pandas query across many runs at once (`SELECT ... FROM 'out/decisions.parquet'`).

One file per table, every run in it (the `run` column says which), each with a fixed Arrow schema so runs written by
different versions of a field's contents still stack. Rows are written episode by episode in row groups of at most
ROW_GROUP rows: the export holds one episode's steps and one row group per table in memory, whatever the run's size.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from jitrl_bench.errors import UserError
from jitrl_bench.records import EpisodeRecord
from jitrl_bench.results.run_data import TABLES, Row, episode_row, open_run
from jitrl_bench.run.protocols import PARTS, part_dirs
from jitrl_bench.run.received import check_run
from jitrl_bench.run.repeats import REPEATS, replica_dirs
from jitrl_bench.run.rundir import make_writable_dir

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

ROW_GROUP = 65_536
SUB_NAMES = {name for _, names in PARTS.values() for name in names}
FORMATS = ("parquet",)
KEYS = [("run", "string"), ("task", "string"), ("agent", "string"), ("episode", "int64")]
STEP = [*KEYS, ("step", "int64")]
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "steps": [*STEP, ("action", "string"), ("reward", "float64"), ("score", "float64"), ("observation", "string"),
              ("observation_sha1", "string"), ("chosen", "int64"), ("candidates", "int64"),
              ("candidates_cut", "int64"), ("bias_applied", "string"), ("prompt_sha1", "string"),
              ("proposal_fallback", "string"), ("llm_calls", "int64"), ("prompt_tokens", "int64"),
              ("completion_tokens", "int64"), ("blocked_requests", "int64"), ("notes", "string")],
    "decisions": [*STEP, ("candidate", "int64"), ("text", "string"), ("z", "float64"), ("advantage", "float64"),
                  ("z_prime", "float64"), ("prob", "float64"), ("chosen", "bool")],
    "neighbours": [*STEP, ("rank", "int64"), ("id", "int64"), ("similarity", "float64"), ("return", "float64"),
                   ("action", "string")],
    "memory": [("run", "string"), ("task", "string"), ("agent", "string"), ("episode_uid", "string"),
               ("id", "int64"), ("step", "int64"), ("state", "string"), ("action", "string"),
               ("action_key", "string"), ("success", "bool"), ("rewards", "list<float64>"), ("imported", "bool")],
}  # fmt: skip
"""The per-step and memory tables' columns and Arrow types (docs/run-files.md explains each)."""
ANNOTATION_TYPES: dict[object, str] = {str: "string", int: "int64", float: "float64", bool: "bool"}


def episode_columns() -> list[tuple[str, str]]:
    """The episodes table: `run`, then every EpisodeRecord field (a mapping as JSON text), so a new field is exported
    without a line here."""
    hints = typing.get_type_hints(EpisodeRecord)
    columns = [("run", "string")]
    for f in fields(EpisodeRecord):
        kind = ANNOTATION_TYPES.get(hints[f.name], "string")  # dict[...] → JSON text
        columns.append(("return" if f.name == "ret" else f.name, kind))
    return columns


def columns_of(table: str) -> list[str]:
    return [name for name, _ in (episode_columns() if table == "episodes" else COLUMNS[table])]


def arrow_schema(table: str) -> pa.Schema:
    import pyarrow as pa

    types: dict[str, Callable[[], pa.DataType]] = {
        "string": pa.string, "int64": pa.int64, "float64": pa.float64, "bool": pa.bool_,
        "list<float64>": lambda: pa.list_(pa.float64()),
    }  # fmt: skip
    columns = episode_columns() if table == "episodes" else COLUMNS[table]
    return pa.schema([(name, types[kind]()) for name, kind in columns])


class TableWriter:
    """One Parquet file, filled a row group at a time."""

    def __init__(self, path: Path, table: str) -> None:
        import pyarrow.parquet as pq

        self.path, self.table = path, table
        self.schema = arrow_schema(table)
        self.rows: list[Row] = []
        self.written = 0
        self._writer: pq.ParquetWriter = pq.ParquetWriter(path, self.schema, compression="zstd")

    def add(self, rows: Sequence[Row]) -> None:
        self.rows += rows
        if len(self.rows) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            try:
                batch = pa.Table.from_pylist(self.rows, schema=self.schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # a hand-edited steps file: a text where a number goes
                raise UserError(f"{self.table}: a value of the wrong type ({e}): restore the run from a copy") from None
            self._writer.write_table(batch, row_group_size=ROW_GROUP)
            self.written += len(self.rows)
            self.rows = []

    def close(self) -> None:
        self.flush()
        self._writer.close()


def export(run_dirs: Sequence[Path], out: Path, on_run: Callable[[Path, int], None] | None = None) -> dict[str, int]:
    """Every table of every run into out/<table>.parquet; returns the rows written per table. Written aside and
    renamed when whole, so a failed export leaves no half file under a final name."""
    for path in run_dirs:
        check_run(path)
    run_dirs = [sub for path in run_dirs for sub in sub_runs(path)]
    # every run is checked and opened before anything is written
    runs = [open_run(path, name) for path, name in zip(run_dirs, labels(run_dirs), strict=True)]
    make_writable_dir(out, "--out")
    writers = {table: TableWriter(out / f".{table}.parquet.part", table) for table in TABLES}
    try:
        for run in runs:
            for record, rows in run.iter_episode_rows():
                writers["episodes"].add([episode_row(run.name, record)])
                writers["steps"].add(rows.steps)
                writers["decisions"].add(rows.decisions)
                writers["neighbours"].add(rows.neighbours)
            for row in run.iter_memory_rows():
                writers["memory"].add([row])
            if on_run is not None:
                on_run(run.path, len(run.records))
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.path.unlink(missing_ok=True)
        raise
    for table, writer in writers.items():
        writer.path.replace(out / f"{table}.parquet")
    return {table: writer.written for table, writer in writers.items()}


def sub_runs(path: Path) -> list[Path]:
    """The run directories a folder stands for: itself, or its replicas (run.repeats) and splits or phases
    (run.protocol), recursively."""
    subs = replica_dirs(path) or [folder for _, _, folder in part_dirs(path)]
    return [run for sub in subs for run in sub_runs(sub)] if subs else [path]


def labels(run_dirs: Sequence[Path]) -> list[str]:
    """Each run's `run` value: its folder name, with as many parent folders as it takes to tell the runs apart (two
    sweeps both hold a run `0`: they become `beta/0` and `k/0`)."""
    paths = [p.resolve() for p in run_dirs]
    if len(set(paths)) < len(paths):
        raise UserError("a run is given twice: give each run once")
    least = [_depth(p) for p in paths]  # a sub-run reads `run/repeats/0/train`, never `train` alone
    depth = 0
    while True:
        names = ["/".join(p.parts[-max(depth, low) :]) for p, low in zip(paths, least, strict=True)]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return names
        depth += 1


def _depth(path: Path) -> int:
    """Path parts that name a sub-run with the run it belongs to: 1 for a run, 2 for `run/train`, 3 for
    `run/repeats/0`, and so on down."""
    parts = path.parts
    if len(parts) >= 2 and parts[-1] in SUB_NAMES:
        return 1 + _depth(Path(*parts[:-1]))
    if len(parts) >= 3 and parts[-2] == REPEATS and parts[-1].isdigit():
        return 2 + _depth(Path(*parts[:-2]))
    return 1
