"""Durability and concurrency of the experience memory."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from jitrl_bench.errors import UserError
from jitrl_bench.jitrl.memory import Experience, ExperienceMemory
from jitrl_bench.jitrl.returns import discounted_return

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
from jitrl_bench.jitrl.memory import Experience, ExperienceMemory
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
