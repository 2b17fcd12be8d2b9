"""The Jericho ROM registry: locating, checking (before frotz ever sees a file) and downloading game files."""

from __future__ import annotations

import functools
import http.server
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitrl_bench.envs.text import roms
from jitrl_bench.envs.text.jericho import JerichoConfig
from jitrl_bench.errors import UserError


def test_rom_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITRL_BENCH_GAMES", str(tmp_path / "env"))
    assert roms.rom_dir(str(tmp_path / "configured")) == tmp_path / "configured"
    assert roms.rom_dir(None) == tmp_path / "env"
    monkeypatch.delenv("JITRL_BENCH_GAMES")
    monkeypatch.setenv("JITRL_BENCH_CACHE", str(tmp_path / "cache"))
    assert roms.rom_dir(None) == tmp_path / "cache" / "jericho-games"


def test_supported_games_table() -> None:
    table = roms.supported_games()
    assert len(table) == 57 and table["zork1"][0] == "zork1.z5" and len(table["zork1"][1]) == 32


def test_unknown_game_suggests_close_names(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown Jericho game 'zork'.*zork1.*jitrl-bench games list"):
        roms.find_rom("zork", tmp_path)


def test_missing_file_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=rf"detective\.z5 .* not in {tmp_path}.*jitrl-bench games download"):
        roms.find_rom("detective", tmp_path)


def _broken_copies(source: Path) -> dict[str, bytes]:
    """Files named like the real detective.z5 that frotz must never open (random bytes would kill the process)."""
    real = source.read_bytes()
    flipped = bytearray(real)
    flipped[len(real) // 2] ^= 0xFF
    return {
        "header": bytes([0]) + real[1:],
        "md5": bytes(flipped),
        "size": real[:10],
        "random": bytes([9]) + random.Random(0).randbytes(len(real) - 1),
    }


@pytest.mark.jericho
@pytest.mark.parametrize(
    ("case", "message"), [("header", "byte 0 is 0"), ("md5", "md5"), ("size", "10 bytes"), ("random", "byte 0 is 9")]
)
def test_bad_rom_is_refused_before_frotz(games_dir: Path, tmp_path: Path, case: str, message: str) -> None:
    (tmp_path / "detective.z5").write_bytes(_broken_copies(games_dir / "detective.z5")[case])
    with pytest.raises(UserError, match=rf"bad game file {tmp_path / 'detective.z5'}: .*{message}"):
        JerichoConfig(game="detective", rom_dir=str(tmp_path)).make("detective")
    # still alive: the file was refused before frotz could end the process


@pytest.mark.jericho
def test_renamed_rom_has_bad_md5(games_dir: Path, tmp_path: Path) -> None:
    data = bytearray((games_dir / "zork1.z5").read_bytes())
    data[1000] ^= 1
    (tmp_path / "zork2.z5").write_bytes(data)
    with pytest.raises(UserError, match=rf"bad game file {tmp_path / 'zork2.z5'}: md5 .* not the supported release"):
        JerichoConfig(game="zork2", rom_dir=str(tmp_path)).make("zork2")


@pytest.mark.jericho
def test_verify_the_game_folder(games_dir: Path, tmp_path: Path) -> None:
    """Whatever folder the suite was given: each supported file there is ok, each absent one missing, the rest unknown.
    Then a folder made here, whose contents are known, gives exactly the rows it must (mutant: verify reporting a
    present but renamed game as ok fails the second half)."""
    present = {p.name for p in games_dir.iterdir() if p.is_file() and p.name != "MD5SUMS"}
    table = {rom for rom, _ in roms.supported_games().values()}
    status = {row.file: row.status for row in roms.verify(games_dir)}
    assert status == {f: "ok" for f in present & table} | {f: "missing" for f in table - present} | {
        f: "unknown" for f in present - table
    }
    assert present & table, "no supported game in the folder"
    for name in ("zork1.z5", "detective.z5"):
        (tmp_path / name).write_bytes((games_dir / name).read_bytes())
    (tmp_path / "mine.z5").write_bytes((games_dir / "zork1.z5").read_bytes())  # a supported game under another name
    mine = {row.file: row.status for row in roms.verify(tmp_path)}
    assert {f: s for f, s in mine.items() if s != "missing"} == {
        "zork1.z5": "ok",
        "detective.z5": "ok",
        "mine.z5": "unknown",
    }
    assert sorted(f for f, s in mine.items() if s == "missing") == sorted(table - {"zork1.z5", "detective.z5"})


@pytest.fixture
def rom_server(games_dir: Path, tmp_path: Path) -> Iterator[str]:
    """A local HTTP server with copies of two real games and a corrupt one (copied at test time, never committed)."""
    served = tmp_path / "served"
    served.mkdir()
    for rom in ("detective.z5", "zork1.z5"):
        shutil.copy(games_dir / rom, served / rom)
    (served / "pentari.z5").write_bytes(bytes([5]) + bytes(1000))
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/suite/"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        return super().translate_path(path.removeprefix("/suite"))

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.jericho
def test_download(rom_server: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    names = ["detective", "zork1", "pentari", "library"]
    rows = roms.download(dest, rom_server, names, progress=False)
    assert [row.status for row in rows] == ["downloaded", "downloaded", "failed", "failed"]
    assert "md5" in rows[2].detail and "404" in rows[3].detail
    assert sorted(p.name for p in dest.iterdir()) == ["detective.z5", "zork1.z5"], "no partial or bad files kept"
    again = roms.download(dest, rom_server, names, progress=False)
    assert [row.status for row in again] == ["ok", "ok", "failed", "failed"]
    assert [row.status for row in roms.verify(dest) if row.file in {"detective.z5", "zork1.z5"}] == ["ok", "ok"]
    with pytest.raises(UserError, match="did you mean"):
        roms.download(dest, rom_server, ["zork9"], progress=False)
