"""Exactly-once commits under torn writes: a file of the commit path (episodes.jsonl, a steps file, a rewards file,
the notes) cut at any byte of its last record leaves a run that resumes to the uninterrupted run's episodes and steps.

The rule (run/rundir.py): a complete last record that lost only its newline is counted and kept (its newline restored);
a cut one is replayed; nothing is ever counted and then deleted. Every offset of each last record is checked against
the recovery code directly (cheap: one copy of a finished run, rewritten per offset); a few representative offsets
(the record's start, its middle, just before its newline) are resumed through the CLI and compared with the run that
was never cut. Mutants these tests were run against (each fails them): `mend_tail` back to the old rule "drop an
unterminated last line" (the direct log test: the record `finished` counted is deleted by the next commit; with
`execute` not calling `recover` either, i.e. the old code, the two CLI log and steps tests fail too); `recover`
without its steps/rewards check (an episode counted with a cut steps or rewards file); `Notebook` without its newline
restoration (the next note is glued onto a kept one, and both are dropped at the next open).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.memory.notebook import NOTES, Note, Notebook
from jitrl_bench.records import EpisodeRecord
from jitrl_bench.run.rundir import RunDirectory

RUN = ["policy=uniform", "run.progress=false", "run.episodes=3", "run.max_steps=4", "run.baselines=[full_history]"]
"""jitrl writes memory, full_history writes notes: 6 episodes, logged (jitrl 0, fh 0, jitrl 1, fh 1, jitrl 2, fh 2)."""
VOLATILE = {"episode_uid", "wall_s", "seconds", "compute_s", "embeddings"}
"""What two plays of one episode may differ in: its uid, its timings, and texts embedded (a resumed process starts
with a cold embedding cache)."""


def run(run_dir: Path) -> str:
    result = CliRunner().invoke(app, ["run", *RUN, f"run.dir={run_dir}"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every cut one must end equal to."""
    path = tmp_path_factory.mktemp("torn") / "whole"
    run(path)
    return path


def log_lines(run_dir: Path) -> list[bytes]:
    return (run_dir / "episodes.jsonl").read_bytes().splitlines(keepends=True)


def played(run_dir: Path) -> dict[tuple[str, str, int], Any]:
    """Each committed episode (exactly once) with its steps, without what differs between two plays of it."""
    rows = [json.loads(line) for line in log_lines(run_dir)]
    keys = [(r["task"], r["agent"], r["episode"]) for r in rows]
    assert len(keys) == len(set(keys)), f"an episode committed twice: {keys}"
    out = {}
    names = {r["episode_uid"]: f"{r['agent']}/{r['episode']}" for r in rows}  # a replayed episode has a new uid
    for key, row in zip(keys, rows, strict=True):
        steps = (run_dir / "steps" / key[0] / key[1] / f"{key[2]}.jsonl").read_text()
        assert steps.endswith("\n") and len(steps.splitlines()) == row["steps"]
        for uid, name in names.items():  # what a step read (notes' sources) names by episode, not by uid
            steps = steps.replace(uid, name)
        out[key] = ({k: v for k, v in row.items() if k not in VOLATILE}, [json.loads(s) for s in steps.splitlines()])
    return out


def notes(run_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir / "memory" / "full_history" / NOTES).read_text()
    assert text.endswith("\n")
    return [{k: v for k, v in json.loads(line).items() if k != "uid"} for line in text.splitlines()]


def every(record: bytes) -> list[int]:
    """Offsets for the direct checks: every byte near the record's ends (its start, just before its newline), every
    7th in between (each offset rewrites and syncs the file: all of them would take minutes on a loaded machine)."""
    n = len(record)
    return sorted({*range(min(n, 48)), *range(max(n - 48, 0), n + 1), *range(0, n, 7)})


def cuts(record: bytes) -> list[int]:
    """The offsets a CLI resume is tried at: the record's start, its middle, just before its newline."""
    return [0, len(record) // 2, len(record) - 1]


def test_every_cut_of_the_logs_last_record_is_kept_or_replayed(whole: Path, tmp_path: Path) -> None:
    lines = log_lines(whole)
    k = len(lines) - 2  # a kill while committing jitrl's episode 2; full_history's is still to come
    head, last, following = b"".join(lines[:k]), lines[k], EpisodeRecord.from_json(lines[k + 1].decode())
    copy = tmp_path / "run"
    shutil.copytree(whole, copy)
    for offset in every(last):
        (copy / "episodes.jsonl").write_bytes(head + last[:offset])
        run_dir = RunDirectory(copy, create=False)
        counted = [(r.agent, r.episode) for r in run_dir.finished()]
        assert len(counted) == k + (offset >= len(last) - 1), offset  # complete, with or without its newline
        run_dir.recover()
        run_dir.commit(following)
        after = [(r.agent, r.episode) for r in run_dir.finished()]
        assert after == [*counted, ("full_history", 2)], f"offset {offset}: counted {counted}, then kept {after}"
        data = (copy / "episodes.jsonl").read_bytes()
        assert data.endswith(b"\n") and all(EpisodeRecord.from_json(line.decode()) for line in data.splitlines())


def test_every_cut_of_the_last_steps_or_rewards_file_is_kept_or_replayed(whole: Path, tmp_path: Path) -> None:
    """A committed episode whose steps or rewards file lost its end (a machine crash before the data reached the
    disk) is taken out of the log by `recover` and played again, unless only the final newline is missing."""
    copy = tmp_path / "run"
    shutil.copytree(whole, copy)
    log = (copy / "episodes.jsonl").read_bytes()
    run_dir = RunDirectory(copy, create=False)
    last = run_dir.finished()[-1]
    run_dir.write_rewards(last, {"scores": [1.0, -2.5], "reply": "a reply\nover lines"})
    for path in (run_dir.steps_path(last), run_dir.rewards_path(last)):
        whole_file = path.read_bytes()
        start = 0 if path.suffix == ".json" else whole_file.rstrip(b"\n").rfind(b"\n") + 1  # one JSON value / line
        for offset in (start + cut for cut in every(whole_file[start:])):
            path.write_bytes(whole_file[:offset])
            (copy / "episodes.jsonl").write_bytes(log)
            run_dir.recover()
            kept = [(r.agent, r.episode) for r in run_dir.finished()]
            if offset >= len(whole_file) - 1:  # whole, perhaps without its newline: kept, newline restored
                assert kept[-1] == (last.agent, last.episode) and path.read_bytes() == whole_file, (path, offset)
            else:  # cut: the episode is out of the log, to be played again
                assert (last.agent, last.episode) not in kept and len(kept) == 5, (path, offset)
        path.write_bytes(whole_file)


def test_every_cut_of_the_last_note_keeps_what_was_counted(whole: Path, tmp_path: Path) -> None:
    """A note is read back only for a committed episode, and whatever was read back survives the next append."""
    source = (whole / "memory" / "full_history" / NOTES).read_bytes()
    head, last = source[: source.rstrip(b"\n").rfind(b"\n") + 1], source[source.rstrip(b"\n").rfind(b"\n") + 1 :]
    uid = json.loads(last)["uid"]
    extra = Note("episode", "tw-simple-7", "tw-simple-7", 3, "next-episode", "text", False, 0.0, "")
    path = tmp_path / NOTES
    for committed in (lambda u: True, lambda u: u != uid):  # its episode committed, or not (to be played again)
        for offset in every(last):
            path.write_bytes(head + last[:offset])
            counted = [n.uid for n in Notebook(path, committed).all()]
            assert (uid in counted) == (committed(uid) and offset >= len(last) - 1), offset
            Notebook(path).add(extra)
            after = [n.uid for n in Notebook(path).all()]
            assert after == [*counted, "next-episode"], f"offset {offset}: counted {counted}, kept {after}"


def test_resume_after_a_cut_log_plays_what_was_cut_once(whole: Path, tmp_path: Path) -> None:
    lines = log_lines(whole)
    k = len(lines) - 2
    for offset in cuts(lines[k]):
        copy = tmp_path / f"log-{offset}"
        shutil.copytree(whole, copy)
        (copy / "episodes.jsonl").write_bytes(b"".join(lines[:k]) + lines[k][:offset])
        run(copy)
        assert played(copy) == played(whole), offset
        assert notes(copy) == notes(whole), offset


def test_resume_after_a_cut_steps_file_plays_that_episode_again(whole: Path, tmp_path: Path) -> None:
    last = EpisodeRecord.from_json(log_lines(whole)[-1].decode())
    steps = whole / "steps" / last.task / last.agent / f"{last.episode}.jsonl"
    data = steps.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    for offset in (start + cut for cut in cuts(data[start:])):
        copy = tmp_path / f"steps-{offset}"
        shutil.copytree(whole, copy)
        (copy / steps.relative_to(whole)).write_bytes(data[:offset])
        output = run(copy)
        assert ("played again" in output) == (offset < len(data) - 1), output
        assert played(copy) == played(whole), offset
        assert notes(copy) == notes(whole), offset


def test_resume_after_a_cut_note_ends_with_the_uninterrupted_notes(whole: Path, tmp_path: Path) -> None:
    """full_history's episode 1, killed while its note was written (not committed: cut anywhere), or committed with
    the note's newline lost (kept): the resume plays the rest, and the notes file ends as the whole run's."""
    lines, source = log_lines(whole), (whole / "memory" / "full_history" / NOTES).read_bytes()
    note_lines = source.splitlines(keepends=True)
    assert [json.loads(n)["episode"] for n in note_lines] == [0, 1, 2]  # one note per episode
    note = note_lines[1]
    for offset in cuts(note):
        copy = tmp_path / f"note-{offset}"
        shutil.copytree(whole, copy)
        committed = 4 if offset == len(note) - 1 else 3  # through full_history 1, or through jitrl 1
        (copy / "episodes.jsonl").write_bytes(b"".join(lines[:committed]))
        (copy / "memory" / "full_history" / NOTES).write_bytes(note_lines[0] + note[:offset])
        run(copy)
        assert played(copy) == played(whole), offset
        assert notes(copy) == notes(whole), offset
