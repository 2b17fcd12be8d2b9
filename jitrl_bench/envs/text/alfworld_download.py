"""`jitrl-bench games download alfworld`: ALFWorld's official text games into the cache, where `env.games=official`
finds them without `env.data_dir`.

The two archives ALFWorld's own `alfworld-download` fetches for the text engine: the trajectories (traj_data.json,
which name each game's task type) and the TextWorld PDDL games (game.tw-pddl). An archive from a server is hostile
input: it is read with a size cap and a stall timeout, and only its game files are taken, each a plain file at a
path of the official layout (`json_2.1.1/<split>/<task>/<trial>/<file>`), no larger than a game can be. A member
that is a link, climbs out (`..`) or is absolute stops the archive with one line; nothing else of the archive is
written. Each file is written to a temp file in its folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jitrl_bench.contract import GameFile, Requirement
from jitrl_bench.envs.text.alfworld_games import DATA_FOLDER, SPLITS
from jitrl_bench.errors import UserError
from jitrl_bench.files import write_file
from jitrl_bench.paths import cache_dir

RELEASES = "https://github.com/alfworld/alfworld/releases/download"
ARCHIVES = {"json_2.1.1_json.zip": f"{RELEASES}/0.2.2", "json_2.1.2_tw-pddl.zip": f"{RELEASES}/0.4.0"}
"""Each archive and the release it comes from (as alfworld-download 0.4.2 names them)."""
TAKEN = ("traj_data.json", "game.tw-pddl")
"""The files the text engine reads (tests of the archive's other files, images and PDDL states, are left)."""
MAX_ARCHIVE_BYTES = 4 << 30
MAX_MEMBER_BYTES = 20_000_000  # as alfworld.MAX_GAME_BYTES: the official games are ~0.1 MB each
MAX_TOTAL_BYTES = 16 << 30
STALL_S = 60.0
"""A read that waits longer than this for a byte ends the download (a server that stalls)."""
DEADLINE_S = 3 * 3600.0
MEMBER = re.compile(
    rf"{re.escape(DATA_FOLDER)}/({'|'.join(SPLITS)})/[\w.\-]+/[\w.\-]+/({'|'.join(map(re.escape, TAKEN))})"
)
"""A game file's path in the official layout: json_2.1.1/<split>/<task folder>/<trial folder>/<file>."""


@dataclass(frozen=True)
class ALFWorldFiles:
    """Implements `GameFiles` for ALFWorld's official games: the configured folder (`env.data_dir`), else
    `$ALFWORLD_DATA`, else the cache, where `jitrl-bench games download alfworld` puts them."""

    configured: str | None = None

    def folder(self, given: str | None) -> Path:
        chosen = given or self.configured or os.environ.get("ALFWORLD_DATA")
        return Path(chosen).expanduser() if chosen else default_dest()

    def verify(self, folder: Path) -> list[GameFile]:
        """One row per split: how many games (game.tw-pddl files of the official layout) it holds."""
        rows = []
        for split in SPLITS:
            where = folder / DATA_FOLDER / split
            found = sum(1 for _ in where.glob("*/*/game.tw-pddl")) if where.is_dir() else 0
            rows.append(GameFile(split, f"{DATA_FOLDER}/{split}", "ok" if found else "missing", f"{found} games"))
        return rows

    def download(self, folder: Path, base_url: str | None, names: Sequence[str]) -> list[GameFile]:
        if names:
            raise UserError(f"ALFWorld's games come as two whole archives: give no names (got {', '.join(names)})")
        return download(folder, base_url)


def official_requirement(configured: str | None) -> Requirement:
    """ALFWorld's official games where `env.games=official` reads them (`env.games=sample` needs none)."""
    files = ALFWorldFiles(configured)
    folder = files.folder(None)
    games = [row for row in files.verify(folder) if row.status == "ok"]
    source = f"$ALFWORLD_DATA={folder}" if not configured and os.environ.get("ALFWORLD_DATA") else str(folder)
    detail = f"{source}: " + (", ".join(f"{row.name} {row.detail}" for row in games) or "no games")
    fix = "jitrl-bench games download alfworld, or ALFWORLD_DATA=DIR (env.games=sample needs none)"
    return Requirement("alfworld official games", bool(games), detail, fix)


def default_dest() -> Path:
    return cache_dir("alfworld")


def download(dest: Path, base_url: str | None = None) -> list[GameFile]:
    """Fetch and unpack each archive into `dest` (skipped when a marker says it was unpacked whole before)."""
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / DATA_FOLDER).is_symlink():
        raise UserError(f"{dest / DATA_FOLDER} is a link: give a folder of its own (--dest)")
    rows = []
    for name, release in ARCHIVES.items():
        marker = dest / f".{name}.unpacked"
        if marker.is_file() and not marker.is_symlink():
            rows.append(GameFile("alfworld", name, "present", marker.read_text(errors="replace").strip()[:200]))
            continue
        url = f"{(base_url or release).rstrip('/')}/{name}"
        try:
            with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as scratch:
                archive = Path(scratch) / name
                digest = _fetch(url, archive)
                files = unpack(archive, dest)
            _write(dest, marker.name, f"sha256 {digest}, {files} game files\n".encode())
            rows.append(GameFile("alfworld", name, "downloaded", f"sha256 {digest}, {files} game files"))
        except (OSError, ValueError, zipfile.BadZipFile, UserError) as error:  # one line; the other is still tried
            rows.append(GameFile("alfworld", name, "failed", f"{url}: {type(error).__name__}: {error}".splitlines()[0]))
    return rows


def _fetch(url: str, path: Path) -> str:
    """Stream `url` to `path` within the caps; returns the sha256 of what arrived."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("only http(s) URLs are fetched")
    digest, size, deadline = hashlib.sha256(), 0, time.monotonic() + DEADLINE_S
    with urllib.request.urlopen(url, timeout=STALL_S) as response, open(path, "xb") as out:
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > MAX_ARCHIVE_BYTES or time.monotonic() > deadline:
                raise ValueError(f"larger than {MAX_ARCHIVE_BYTES >> 30} GiB or slower than {DEADLINE_S / 3600:.0f} h")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def unpack(archive: Path, dest: Path) -> int:
    """The game files of `archive` into `dest`; every member checked before anything is written. Returns how many."""
    with zipfile.ZipFile(archive) as zipped:
        members, total, left = [], 0, 0
        for info in zipped.infolist():
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
                raise ValueError(f"member {info.filename[:120]!r} leaves the folder")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ValueError(f"member {info.filename[:120]!r} is a link")
            if info.is_dir() or not MEMBER.fullmatch(info.filename):
                left += 0 if info.is_dir() else 1
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                raise ValueError(f"member {info.filename[:120]!r} is {info.file_size} bytes: not a game")
            total += info.file_size
            members.append(info)
        if not members:
            raise ValueError(f"no game files at {DATA_FOLDER}/<split>/<task>/<trial>/ ({left} other members)")
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"{total} bytes of games: more than {MAX_TOTAL_BYTES >> 30} GiB")
        for info in members:
            with zipped.open(info) as source:
                data = source.read(MAX_MEMBER_BYTES + 1)  # the header's size is the archive's claim, not a fact
            if len(data) > MAX_MEMBER_BYTES:
                raise ValueError(f"member {info.filename[:120]!r} is larger than it says")
            _write(dest, info.filename, data)
    return len(members)


def _write(dest: Path, relative: str, data: bytes) -> None:
    """`data` at `relative` under `dest`, whole or not at all; a link among the folders on the way is refused."""
    folder = dest
    for part in PurePosixPath(relative).parent.parts:
        folder = folder / part
        if folder.is_symlink():
            raise ValueError(f"{folder} is a link")
        folder.mkdir(exist_ok=True)
    write_file(folder / PurePosixPath(relative).name, data)  # a link planted at the file itself is replaced
