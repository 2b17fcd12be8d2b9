"""The Jericho game files (ROMs): where they live, which ones Jericho supports, checking and downloading them.

Game files are on no package registry and must never be committed; users download them from the public
BYU-PCCL/z-machine-games repository. A file that is not Z-code kills the whole Python process inside frotz, so every
file is checked here (header, size, md5) before frotz opens it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jericho.defines import BINDINGS_DICT

from jitrl_bench.contract import GameFile, Requirement
from jitrl_bench.errors import UserError
from jitrl_bench.files import write_file
from jitrl_bench.paths import cache_dir
from jitrl_bench.text import first_line

SUITE_URL = "https://raw.githubusercontent.com/BYU-PCCL/z-machine-games/master/jericho-game-suite"
GAMES_ENV_VAR = "JITRL_BENCH_GAMES"
MIN_ROM_BYTES = 64  # the Z-machine header alone is 64 bytes
MAX_ROM_BYTES = 512 * 1024  # the largest story file the Z-machine (version 8) can address
_ROM_NAME = re.compile(r"\.z[1-8]$")


def rom_dir(configured: str | None = None) -> Path:
    """The game folder: the configured `env.rom_dir`, else `$JITRL_BENCH_GAMES`, else `cache_dir("jericho-games")`."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(GAMES_ENV_VAR):
        return Path(os.environ[GAMES_ENV_VAR]).expanduser()
    return cache_dir("jericho-games")


def supported_games() -> dict[str, tuple[str, str]]:
    """Game name -> (ROM file name, md5) for every game Jericho has bindings for, sorted by name."""
    table = {bindings["name"]: (bindings["rom"], md5) for md5, bindings in BINDINGS_DICT.items()}
    return dict(sorted(table.items()))


def _unknown_game(name: str, games: Iterable[str]) -> UserError:
    close = difflib.get_close_matches(name, list(games), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return UserError(f"unknown Jericho game {name!r}: {hint}(`jitrl-bench games list` shows the supported games)")


def find_rom(name: str, folder: Path) -> Path:
    """The path of a supported game's ROM in `folder`; a UserError says how to fix an unknown name or a missing file."""
    games = supported_games()
    if name not in games:
        raise _unknown_game(name, games)
    path = folder / games[name][0]
    if not path.is_file():
        raise UserError(
            f"game file {path.name} for {name!r} is not in {folder}: run `jitrl-bench games download`, "
            f"or point env.rom_dir / ${GAMES_ENV_VAR} at the folder that has it"
        )
    return path


def rom_problem(path: Path, expected_md5: str | None) -> tuple[str, str]:
    """(status, what is wrong) for a file, reading only its bytes: ok | missing | bad-header | bad-md5."""
    if not path.is_file():
        return "missing", "no such file"
    data = path.read_bytes()
    if not MIN_ROM_BYTES <= len(data) <= MAX_ROM_BYTES:
        return "bad-header", f"{len(data)} bytes is not the size of a Z-code game"
    if not 1 <= data[0] <= 8:
        return "bad-header", f"byte 0 is {data[0]}, not a Z-machine version (1-8): not a Z-code game"
    if expected_md5 is not None and (md5 := hashlib.md5(data).hexdigest()) != expected_md5:
        return "bad-md5", f"md5 {md5} is not the supported release's {expected_md5} (a different or damaged copy)"
    return "ok", ""


def validate_rom(path: Path, expected_md5: str | None) -> None:
    """Raise a UserError naming the file unless it is a Z-code game with the expected md5 (None: any md5)."""
    status, problem = rom_problem(path, expected_md5)
    if status != "ok":
        raise UserError(f"bad game file {path}: {problem}; re-download it with `jitrl-bench games download`")


def verify(folder: Path) -> list[GameFile]:
    """Check every supported game's file in `folder`, then list the Z-code files there that Jericho does not know."""
    rows: list[GameFile] = []
    known: set[str] = set()
    for name, (rom, md5) in supported_games().items():
        status, problem = rom_problem(folder / rom, md5)
        rows.append(GameFile(name, rom, status, problem))
        known.add(rom)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if _ROM_NAME.search(path.name) and path.name not in known:
                rows.append(GameFile(path.stem, path.name, "unknown", "not in Jericho's supported-game table"))
    return rows


def _fetch(url: str, dest: Path, md5: str) -> str:
    """Download one ROM atomically; returns "downloaded" or raises with what went wrong."""
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    if (got := hashlib.md5(data).hexdigest()) != md5:
        raise ValueError(f"md5 {got} does not match the supported release's {md5}")
    write_file(dest, data)
    return "downloaded"


def download(
    dest: Path, base_url: str = SUITE_URL, names: list[str] | None = None, progress: bool = True
) -> list[GameFile]:
    """Fetch `<base_url>/<rom>` for each supported game (or `names`) into `dest`, skipping files that are already valid.

    A failed file is reported in its row (status "failed") and the others still download.
    """
    games = supported_games()
    for name in names or []:
        if name not in games:
            raise _unknown_game(name, games)
    wanted = {name: games[name] for name in (names or games)}
    dest.mkdir(parents=True, exist_ok=True)
    rows: list[GameFile] = []

    from rich.progress import Progress  # imported here: only the download needs it

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("downloading games", total=len(wanted))
        for name, (rom, md5) in wanted.items():
            bar.update(task, description=rom)
            if rom_problem(dest / rom, md5)[0] == "ok":
                rows.append(GameFile(name, rom, "ok", "already valid"))
            else:
                try:
                    rows.append(GameFile(name, rom, _fetch(f"{base_url.rstrip('/')}/{rom}", dest / rom, md5)))
                except Exception as error:  # one bad file (404, timeout, wrong md5) must not stop the others
                    rows.append(GameFile(name, rom, "failed", str(error)))
            bar.advance(task)
    return rows


@dataclass(frozen=True)
class RomFiles:
    """Implements `GameFiles` for Jericho: the folder a config (its `rom_dir`) or the command line names."""

    configured: str | None = None

    def folder(self, given: str | None) -> Path:
        return rom_dir(given or self.configured)

    def verify(self, folder: Path) -> list[GameFile]:
        return verify(folder)

    def download(self, folder: Path, base_url: str | None, names: Sequence[str]) -> list[GameFile]:
        return download(folder, base_url or SUITE_URL, list(names) or None)


def rom_requirement(configured: str | None) -> Requirement:
    """Valid story files in the folder a Jericho run reads."""
    fix = f"jitrl-bench games download (or set {GAMES_ENV_VAR}=/path/to/jericho-game-suite)"
    try:
        folder = rom_dir(configured)
        ok = [r for r in verify(folder) if r.status == "ok"]
    except Exception as e:  # doctor reports, never crashes
        return Requirement("jericho ROMs", False, first_line(e), fix)
    return Requirement("jericho ROMs", bool(ok), f"{len(ok)} valid games in {folder}", fix)
