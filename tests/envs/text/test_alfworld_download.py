"""`jitrl-bench games download alfworld` from a local server (outside the subject: the network) that serves the two
archives in ALFWorld's official layout, built from the project's own games; then a run with `env.games=official` and
no data_dir plays what landed in the cache. Hostile archives (a member that climbs out, a link) fail in one line and
write nothing."""

from __future__ import annotations

import http.server
import json
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from jitrl_bench.envs.text.alfworld_download import ARCHIVES
from jitrl_bench.envs.text.alfworld_games import write_sample

REPO = Path(__file__).resolve().parents[3]
TRAJ, GAMES = ARCHIVES


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jitrl_bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder served over HTTP on a free port: (its URL, the folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def _official_archives(into: Path, games: Path) -> None:
    """The sample games split as ALFWorld's release splits them: trajectories in one archive, games in the other (and
    a file of the release the text engine does not read)."""
    with zipfile.ZipFile(into / TRAJ, "w") as traj, zipfile.ZipFile(into / GAMES, "w") as pddl:
        for path in sorted(games.rglob("*")):
            member = str(path.relative_to(games))
            if path.name == "traj_data.json":
                traj.write(path, member)
                traj.writestr(member.replace("traj_data.json", "initial_state.pddl"), "(define)")
            elif path.name == "game.tw-pddl":
                pddl.write(path, member)


def _statuses(printed: str) -> list[str]:
    """The status column of the table `games download alfworld` prints."""
    rows = [line.split("│") for line in printed.splitlines() if line.startswith("│ alfworld")]
    return [row[3].strip() for row in rows if row[2].strip().startswith("json_2.1")]


@pytest.mark.slow
def test_downloaded_games_are_played_by_a_run_without_a_data_dir(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant tried: `alfworld.root()` without the cache fallback ends the run in "needs ALFWorld's files"."""
    url, folder = served
    _official_archives(folder, write_sample(tmp_path / "sample", per_type=1))
    cache = tmp_path / "cache"
    monkeypatch.setenv("JITRL_BENCH_CACHE", str(cache))
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    done = cli("games", "download", "alfworld", "--base-url", url)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert _statuses(done.stdout) == ["downloaded", "downloaded"] and "18 game files" in done.stdout, done.stdout
    landed = sorted(p.name for p in (cache / "alfworld" / "json_2.1.1").rglob("*") if p.is_file())
    assert set(landed) == {"traj_data.json", "game.tw-pddl"} and len(landed) == 36  # 6 task types x 3 splits x 2
    again = cli("games", "download", "alfworld", "--base-url", url)
    assert again.returncode == 0 and _statuses(again.stdout) == ["present", "present"], again.stdout

    run_dir = tmp_path / "r"
    done = cli("run", "env=alfworld", "env.games=official", "policy=uniform", "run.episodes=1", "run.max_steps=3",
               "run.baselines=[]", "run.progress=false", f"run.dir={run_dir}")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    row = json.loads((run_dir / "episodes.jsonl").read_text().splitlines()[0])
    assert row["status"] == "ok" and row["artifacts"]["games"] == "official", row


@pytest.mark.parametrize("hostile", ["climbs", "link"])
def test_a_hostile_archive_is_one_line_and_writes_nothing(
    served: tuple[str, Path], tmp_path: Path, hostile: str
) -> None:
    url, folder = served
    with zipfile.ZipFile(folder / TRAJ, "w") as archive:
        archive.writestr("json_2.1.1/train/t/trial_1/traj_data.json", "{}")
        if hostile == "climbs":
            archive.writestr("json_2.1.1/train/../../../outside.json", "{}")
        else:
            link = zipfile.ZipInfo("json_2.1.1/train/t/trial_2/traj_data.json")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "/etc/passwd")
    dest = tmp_path / "dest" / "alfworld"
    done = cli("games", "download", "alfworld", "--base-url", url, "--dest", str(dest))
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    wanted = "leaves the folder" if hostile == "climbs" else "is a link"
    assert _statuses(done.stdout) == ["failed", "failed"] and wanted in done.stdout, done.stdout  # the second: a 404
    assert not (dest / "json_2.1.1").exists() and not (tmp_path / "outside.json").exists()
    assert not any(p.name.startswith(".download-") for p in dest.iterdir())
