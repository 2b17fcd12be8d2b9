"""What an environment needs on this machine that no run makes: software, runtimes, sites, and game files no package
ships. `jitrl-bench doctor` and `jitrl-bench games` reach each env's needs through these, by the env's config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Requirement:
    """One thing an environment needs and whether this machine has it: a row of `doctor`."""

    part: str
    """What is needed ("java (scienceworld, textworld_express)", "WA_GITLAB"): rows of one part are shown once."""
    ok: bool
    detail: str
    """What was found, as the check itself saw it (a version, a path, an HTTP status, an error's first line)."""
    fix: str = ""
    """The command or setting that provides it."""


@dataclass(frozen=True)
class GameFile:
    """One row of `jitrl-bench games`: a game file or an archive of them, and its state."""

    name: str
    file: str
    status: str
    """verify: ok | missing | bad-md5 | bad-header | unknown; download: ok | present | downloaded | failed."""
    detail: str = ""


class GameFiles(Protocol):
    """An environment's game files that no package ships (Jericho's story files, ALFWorld's official games)."""

    def folder(self, given: str | None) -> Path:
        """Where they are: `given` (a command-line option), else the env's own setting or its cache folder."""
        ...

    def verify(self, folder: Path) -> list[GameFile]:
        """Each expected file's state in `folder` (a missing folder: every row missing)."""
        ...

    def download(self, folder: Path, base_url: str | None, names: Sequence[str]) -> list[GameFile]:
        """Fetch them (all, or `names`) into `folder` from their release (or `base_url`), as hostile input: bounded
        in size and time, checked before they are kept. A failed file is a row with status failed, not a raise."""
        ...
