"""Durability and concurrency of the experience memory."""

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jitrl_bench.errors import UserError
from jitrl_bench.memory.returns import discounted_return
from jitrl_bench.memory.store import Experience, ExperienceMemory

DIM = 16


def experiences(episode: str, n: int, task: str = "t", rewards: list[float] | None = None) -> list[Experience]:
    rewards = rewards or [float(i) for i in range(n)]
    return [
        Experience(
            state=f"{episode} state {t}",
            fields={"observation": f"{episode} obs {t}"},
            action=f"Go {t % 3}",
            action_key=f"go {t % 3}",
            rewards=rewards[t:],
            episode=episode,
            task=task,
            step=t,
            success=False,
        )
        for t in range(n)
    ]


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def open_memory(path: Path | None, gamma: float = 0.9, **kw) -> ExperienceMemory:
    return ExperienceMemory(path, DIM, gamma=gamma, **kw)


def test_round_trip_gives_identical_retrieval(tmp_path: Path) -> None:
    memory = open_memory(tmp_path)
    memory.add(experiences("e1", 5), vectors(5, 1))
    memory.add(experiences("e2", 4), vectors(4, 2))
    query = vectors(1, 3)[0]
    before = memory.search(query, 5)
    again = open_memory(tmp_path)
    assert len(again) == 9 and again.report.dropped == []
    assert again.search(query, 5) == before


def test_discount_is_applied_at_query_time(tmp_path: Path) -> None:
    rewards = [1.0, 0.0, 2.0]
    open_memory(tmp_path).add(experiences("e", 3, rewards=rewards), vectors(3, 0))
    for gamma in (0.5, 0.9):
        memory = open_memory(tmp_path, gamma=gamma)
        got = {nb.step: nb.ret for nb in memory.search(vectors(1, 9)[0], 3)}
        assert got == {t: pytest.approx(discounted_return(rewards[t:], gamma)) for t in range(3)}
    assert discounted_return([1.0, 0.0, 2.0], 0.5) == pytest.approx(1.5)


def test_a_cut_write_keeps_every_complete_record_and_reports_the_cut_one(tmp_path: Path) -> None:
    memory = open_memory(tmp_path)
    memory.add(experiences("e1", 3), vectors(3, 1))
    memory.add(experiences("e2", 3), vectors(3, 2))
    entries = tmp_path / "entries.jsonl"
    size = entries.stat().st_size
    with open(entries, "r+b") as f:  # cut the last record in the middle, as a kill during write would
        f.truncate(size - 25)
    reopened = open_memory(tmp_path)
    assert len(reopened) == 5
    assert len(reopened.report.dropped) == 1 and "cut record" in reopened.report.dropped[0]
    # The next writer continues cleanly after the cut; ids stay aligned with embedding rows.
    reopened.add(experiences("e3", 2), vectors(2, 3))
    final = open_memory(tmp_path)
    assert len(final) == 7 and final.report.dropped == []
    target = vectors(2, 3)[1]
    top = final.search(target, 1)[0]
    assert top.similarity == pytest.approx(1.0, abs=1e-5) and top.step == 1


def test_orphan_embedding_rows_from_a_crash_are_ignored_then_overwritten(tmp_path: Path) -> None:
    memory = open_memory(tmp_path)
    memory.add(experiences("e1", 3), vectors(3, 1))
    with open(tmp_path / "embeddings.f32", "ab") as f:  # rows written, crash before their JSON lines
        f.write(vectors(2, 99).tobytes() + b"\x01\x02")
    reopened = open_memory(tmp_path)
    assert len(reopened) == 3
    reopened.add(experiences("e2", 2), vectors(2, 5))
    final = open_memory(tmp_path)
    assert len(final) == 5
    assert os.path.getsize(tmp_path / "embeddings.f32") == 5 * DIM * 4
    assert final.search(vectors(2, 5)[0], 1)[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_uncommitted_episodes_are_not_searchable(tmp_path: Path) -> None:
    memory = open_memory(tmp_path)
    memory.add(experiences("kept", 3), vectors(3, 1))
    memory.add(experiences("lost", 3), vectors(3, 2))
    reopened = open_memory(tmp_path, committed={"kept"}.__contains__)
    assert len(reopened) == 3 and reopened.report.uncommitted == 3
    assert all(nb.id < 3 for nb in reopened.search(vectors(1, 2)[0], 10))


def test_partitions_are_hard_filters() -> None:
    memory = open_memory(None)
    memory.add(experiences("a", 3, task="zork1"), vectors(3, 1))
    memory.add(experiences("b", 3, task="detective"), vectors(3, 1))
    hits = memory.search(vectors(3, 1)[0], 10, where={"task": "detective"})
    assert {nb.id for nb in hits} == {3, 4, 5}
    assert memory.search(vectors(1, 1)[0], 10, where={"task": "unknown"}) == []


def test_threshold_filters_low_similarity() -> None:
    memory = open_memory(None)
    memory.add(experiences("a", 5), vectors(5, 1))
    query = vectors(5, 1)[2]
    hits = memory.search(query, 5, threshold=0.999)
    assert [nb.id for nb in hits] == [2]


WRITER = """
import sys
from pathlib import Path
import numpy as np
from jitrl_bench.memory.store import Experience, ExperienceMemory
path, writer = sys.argv[1], int(sys.argv[2])
memory = ExperienceMemory(Path(path), 16, gamma=0.9)
for b in range(100):
    exps = [Experience(state="s", action="a", action_key="a", rewards=[1.0], episode=f"w{writer}-b{b}", task="t",
                       step=t, success=False) for t in range(4)]
    memory.add(exps, np.random.default_rng(writer * 1000 + b).standard_normal((4, 16)).astype(np.float32))
"""


def test_two_processes_writing_in_parallel_lose_nothing(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)]) for w in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    memory = open_memory(tmp_path)
    assert len(memory) == 2 * 100 * 4 and memory.report.dropped == []
    episodes = {r["episode"] for r in memory.records()}
    assert episodes == {f"w{w}-b{b}" for w in range(2) for b in range(100)}
    ids = [r["id"] for r in memory.records()]
    assert ids == list(range(800))
    for r in memory.records():  # every record's embedding row is its own
        w, b = (int(x[1:]) for x in r["episode"].split("-"))
        expected = vectors(4, w * 1000 + b)[r["step"]]
        np.testing.assert_array_equal(memory.embeddings_of([r["id"]])[0], expected)


def test_threads_sharing_one_memory_lose_nothing(tmp_path: Path) -> None:
    memory = open_memory(tmp_path)
    threads = [
        threading.Thread(target=lambda w=w: [memory.add(experiences(f"t{w}-{b}", 3), vectors(3, b)) for b in range(20)])
        for w in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(memory) == 240 and len(open_memory(tmp_path)) == 240


def test_import_from_copies_committed_entries_with_provenance(tmp_path: Path) -> None:
    source = open_memory(tmp_path / "a")
    source.add(experiences("old", 3), vectors(3, 1))
    source.add(experiences("uncommitted", 2), vectors(2, 2))
    reader = open_memory(tmp_path / "a", committed={"old"}.__contains__, read_only=True)
    target = open_memory(tmp_path / "b")
    assert target.import_from(reader) == 3
    assert [r["episode"] for r in target.records()] == ["old"] * 3
    with pytest.raises(PermissionError):
        reader.add(experiences("x", 1), vectors(1, 0))


def test_dimension_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    open_memory(tmp_path).add(experiences("e", 1), vectors(1, 0))
    with pytest.raises(UserError, match="16-d"):
        ExperienceMemory(tmp_path, 32, gamma=0.9)
    with pytest.raises(UserError, match="16-d"):  # read-only (memory.load_from) checks it too
        ExperienceMemory(tmp_path, 32, gamma=0.9, read_only=True)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match=r"meta\.json"):
        ExperienceMemory(tmp_path, 16, gamma=0.9)


# ---- integrity at open: a torn end is cut back (one line), anything else is one line naming file and line ----------

ROW = DIM * 4


def written(path: Path, episodes: int = 2, steps: int = 3) -> list[np.ndarray]:
    """A memory of `episodes` x `steps` entries; the embedding rows of each add, in id order."""
    memory = open_memory(path)
    rows = [vectors(steps, seed) for seed in range(episodes)]
    for e, batch in enumerate(rows):
        memory.add(experiences(f"e{e}", steps), batch)
    return rows


def consistent(path: Path, rows: np.ndarray) -> ExperienceMemory:
    """The memory at `path` holds exactly `rows` (row i under id i), with nothing dropped, and search finds each."""
    memory = open_memory(path)
    assert memory.report.dropped == []
    assert [r["id"] for r in memory.records()] == list(range(len(rows)))
    assert os.path.getsize(path / "embeddings.f32") == len(rows) * ROW
    np.testing.assert_array_equal(memory.embeddings_of(list(range(len(rows)))), rows)
    for i, row in enumerate(rows):
        top = memory.search(row, 1)[0]
        assert top.id == i and top.similarity == pytest.approx(1.0, abs=1e-5)
    return memory


@pytest.mark.parametrize("size", [0, 10, ROW, 3 * ROW + 17, 5 * ROW + ROW - 1])
def test_a_cut_embeddings_file_cuts_the_records_back_and_the_next_add_continues(tmp_path: Path, size: int) -> None:
    """Mutant caught (tried): not truncating entries.jsonl at the cut: the next add reuses ids (0,1,2,1,2 on disk)."""
    rows = np.concatenate(written(tmp_path))
    with open(tmp_path / "embeddings.f32", "r+b") as f:
        f.truncate(size)
    reopened = open_memory(tmp_path)
    kept = size // ROW
    assert len(reopened) == kept == reopened.next_id
    assert len(reopened.report.dropped) == 1 and "embedding rows are missing" in reopened.report.dropped[0]
    more = vectors(2, 77)
    assert reopened.add(experiences("next", 2), more) == [kept, kept + 1]
    consistent(tmp_path, np.concatenate([rows[:kept], more]))


def test_a_jsonl_cut_at_every_byte_of_its_last_record_is_cut_back_cleanly(tmp_path: Path) -> None:
    """Mutants caught (tried): not truncating the torn line (the next record is glued to it); cutting no orphan
    embedding rows, neither at open nor at add (the next entry's row would not be its id's)."""
    source = tmp_path / "source"
    rows = np.concatenate(written(source, episodes=1, steps=3))
    entries = (source / "entries.jsonl").read_bytes()
    last = entries.rstrip(b"\n").rfind(b"\n") + 1
    more = vectors(1, 55)
    for cut in range(last, len(entries)):
        folder = tmp_path / f"cut{cut}"
        shutil.copytree(source, folder)
        with open(folder / "entries.jsonl", "r+b") as f:
            f.truncate(cut)
        reopened = open_memory(folder)
        assert len(reopened) == 2 and len(reopened.report.dropped) == 1, cut
        assert reopened.add(experiences("next", 1), more) == [2]
        consistent(folder, np.concatenate([rows[:2], more]))
        shutil.rmtree(folder)


def test_a_torn_end_is_left_as_it_is_by_a_read_only_reader(tmp_path: Path) -> None:
    written(tmp_path)
    with open(tmp_path / "embeddings.f32", "r+b") as f:
        f.truncate(4 * ROW + 3)
    before = [(p.name, p.read_bytes()) for p in sorted(tmp_path.iterdir()) if p.suffix != ".lock"]
    reader = open_memory(tmp_path, read_only=True)
    assert len(reader) == 4 and len(reader.report.dropped) == 1
    assert [(p.name, p.read_bytes()) for p in sorted(tmp_path.iterdir()) if p.suffix != ".lock"] == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: {**r, "id": "1"}, "id '1' is not an integer"),
        (lambda r: {**r, "id": 1.0}, "id 1.0 is not an integer"),
        (lambda r: {**r, "id": 4}, "id 4 where 1 comes next"),
        (lambda r: {k: v for k, v in r.items() if k != "action"}, "no action text"),
        (lambda r: {k: v for k, v in r.items() if k != "action_key"}, "no action_key text"),
        (lambda r: {**r, "rewards": "high"}, "rewards is not a list of numbers"),
        (lambda r: {**r, "step": None}, "step is not an integer"),
        (lambda r: [r], "not a JSON object"),
    ],
)
def test_a_record_that_is_not_a_memory_record_is_one_line_naming_file_and_line(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], problem: str
) -> None:
    """Mutant caught (tried): without `checked_record`, these raised a raw ValueError / KeyError or loaded."""
    written(tmp_path)
    entries = tmp_path / "entries.jsonl"
    lines = entries.read_text().splitlines()
    lines[1] = json.dumps(change(json.loads(lines[1])))
    entries.write_text("\n".join(lines) + "\n")
    for read_only in (False, True):
        with pytest.raises(UserError) as error:
            open_memory(tmp_path, read_only=read_only)
        assert str(error.value).startswith(f"{entries} line 2: not a memory record ({problem})")
        assert "\n" not in str(error.value)


def test_ids_written_twice_are_refused(tmp_path: Path) -> None:
    """The file the old bug wrote (ids 0,1,2,1,2) is named, not searched with duplicate ids."""
    written(tmp_path, episodes=1)
    entries = tmp_path / "entries.jsonl"
    lines = entries.read_text().splitlines()
    entries.write_text("\n".join(lines + lines[1:]) + "\n")
    with pytest.raises(UserError, match=r"entries\.jsonl line 4: .*id 1 where 3 comes next"):
        open_memory(tmp_path)


@pytest.mark.parametrize("dim", [0, -16, "16", 16.5, None])
def test_a_meta_json_without_a_positive_integer_dim_is_a_user_error(tmp_path: Path, dim: object) -> None:
    """Mutant caught (tried): without the dim check, dim 0 raised ZeroDivisionError at open."""
    written(tmp_path, episodes=1)
    (tmp_path / "meta.json").write_text(json.dumps({"format": 1, "dim": dim, "embedder": "x"}))
    with pytest.raises(UserError, match=r"meta\.json: dim must be a positive integer"):
        ExperienceMemory(tmp_path, DIM, gamma=0.9)
