"""TextWorld: generated games (made on demand by `tw-make`, cached by seed) played as `TextGameEnv`s."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jericho
import textworld
from filelock import FileLock

from jitrl_bench.checks import Checked, at_least, name, non_empty, one_of
from jitrl_bench.contract import GameFiles, Regrader, Requirement, SharedCopies
from jitrl_bench.envs.text.game import TextGameEnv
from jitrl_bench.errors import UserError
from jitrl_bench.paths import cache_dir


@dataclass(frozen=True)
class GameKind:
    """A family of games `tw-make` can generate, with the options it takes."""

    challenge: str  # tw-make's sub-command
    defaults: dict[str, Any]  # option name (tw-make's flag with "_" for "-") -> default value
    named: tuple[str, ...] = ()  # options always written in the file name; others only when not at their default


KINDS = {
    "simple": GameKind("tw-simple", {"rewards": "dense", "goal": "detailed"}),
    "custom": GameKind(
        "custom",
        {"world_size": 3, "nb_objects": 4, "quest_length": 3},
        named=("world_size", "nb_objects", "quest_length"),
    ),
}
NAME_TAGS = {"rewards": "r", "goal": "g", "world_size": "w", "nb_objects": "o", "quest_length": "q"}
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_]+$")


def _options(kind: str, opts: dict[str, Any]) -> tuple[GameKind, dict[str, Any]]:
    if kind not in KINDS:
        raise UserError(f"unknown TextWorld game kind {kind!r}; use one of: {', '.join(KINDS)}")
    spec = KINDS[kind]
    unknown = sorted(set(opts) - set(spec.defaults))
    if unknown:
        raise UserError(
            f"TextWorld kind {kind!r} takes no option {', '.join(unknown)}; it takes: {', '.join(spec.defaults)}"
        )
    options = {**spec.defaults, **opts}
    for key, value in options.items():
        if not _SAFE_VALUE.match(str(value)):
            raise UserError(f"TextWorld option {key}={value!r} must be a number or a plain word")
    return spec, options


def game_name(kind: str, seed: int, **opts: Any) -> str:
    """The task id and file stem, e.g. "tw-simple-7" or "tw-custom-w3-o4-q3-7": different options never collide.

    The "tw-" prefix matters: Jericho only scores a TextWorld game whose file name starts with it.
    """
    spec, options = _options(kind, opts)
    tags = [f"{NAME_TAGS[k]}{v}" for k, v in options.items() if k in spec.named or v != spec.defaults[k]]
    return "-".join(["tw", kind, *tags, str(int(seed))])


def _tw_make() -> list[str]:
    script = Path(sys.executable).with_name("tw-make")
    if script.is_file():
        return [sys.executable, str(script)]
    found = shutil.which("tw-make")
    if found is None:
        raise UserError("tw-make not found: install TextWorld (pip install textworld==1.7.0) in this environment")
    return [found]


def make_game(kind: str, seed: int, out_dir: Path | None = None, **opts: Any) -> Path:
    """Generate (once) the game `<out_dir>/<game_name>.z8` with its .json/.ni sidecars, deterministic by seed.

    Safe when several processes ask for the same game: one generates under a file lock into a temporary folder and
    renames the files into place (the .z8 last); the others wait and reuse it. The same on any day and in any
    process: tw-make runs with a fixed hash seed and the compile date in the story header is overwritten (the .json
    still names where TextWorld is installed).
    """
    spec, options = _options(kind, opts)
    name = game_name(kind, seed, **options)
    folder = Path(out_dir) if out_dir is not None else cache_dir("textworld")
    folder.mkdir(parents=True, exist_ok=True)
    game = folder / f"{name}.z8"
    with FileLock(str(folder / f".{name}.lock")):
        if game.is_file() and game.with_suffix(".json").is_file():
            _undated(game)  # a cache made before the header was fixed
            return game
        with tempfile.TemporaryDirectory(dir=folder, prefix=f".{name}-") as tmp:
            flags = [arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
            command = [*_tw_make(), spec.challenge, *flags, "--seed", str(int(seed)), "--silent", "-f"]
            fixed_hash = {**os.environ, "PYTHONHASHSEED": "0"}  # tw-make iterates over sets when it writes the .json
            output = Path(tmp, f"{name}.z8")
            done = subprocess.run([*command, "--output", str(output)], capture_output=True, text=True, env=fixed_hash)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise UserError(f"tw-make could not generate {name}: {reason}; check the TextWorld options")
            _undated(output)
            for suffix in (".ni", ".json", ".z8"):
                made = Path(tmp, name + suffix)
                if made.is_file():
                    os.replace(made, folder / (name + suffix))
    return game


# Bytes 0x12-0x17 of a Z-machine story are its serial number, which Inform sets to the compile date (YYMMDD); the
# story's checksum covers only the bytes from 0x40 on, so overwriting the serial leaves a valid game.
_SERIAL = slice(0x12, 0x18)
_UNDATED = b"000000"


def _undated(story: Path) -> None:
    with story.open("r+b") as file:
        file.seek(_SERIAL.start)
        if file.read(_SERIAL.stop - _SERIAL.start) != _UNDATED:
            file.seek(_SERIAL.start)
            file.write(_UNDATED)


# The ASCII-art "TextWorld" title printed at the start of every game: 2,000 characters with no information in them.
_BANNER_LINE = re.compile(r"^[ $|\\/_<>]+$", re.MULTILINE)


def _without_banner(text: str) -> str:
    return _BANNER_LINE.sub("", text)


INFOS = textworld.EnvInfos(
    admissible_commands=True, description=True, inventory=True, score=True, max_score=True, won=True, lost=True
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TextWorld asks Jericho for valid actions too, which warns every turn that it has none for these games."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jericho.UnsupportedGameWarning)
        yield


class TextWorldBackend:
    """A generated game played through TextWorld (which runs it in Jericho's frotz underneath).

    Candidates are TextWorld's `admissible_commands` (Jericho lists none for these games). Score, max score and won/lost
    are TextWorld's: the score the game prints to its Inform 7 tracker each turn, max_score from the game's .json, and
    won/lost from the game's "*** The End ***" / "*** You lost! ***" lines. They match Jericho's own score and victory
    for `tw-` files, but do not depend on that file-name convention. `description` and `inventory` are printed by the
    game each turn on TextWorld's request, so reading them costs no move.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._env: Any = textworld.start(str(path), request_infos=INFOS)
        self._state: Any = None

    @property
    def score(self) -> float:
        return float(self._state["score"] or 0)

    @property
    def max_score(self) -> float:
        return float(self._state["max_score"] or 0)

    @property
    def won(self) -> bool:
        return bool(self._state["won"])

    @property
    def lost(self) -> bool:
        return bool(self._state["lost"])

    def reset(self, seed: int | None) -> str:
        # Jericho turns seed 0 into -1 (a clock seed) for games without bindings, as these are: shift seeds by one.
        self._env.seed(1 if seed is None else seed + 1)
        with _quiet():
            self._state = self._env.reset()
        return _without_banner(self._state.feedback)

    def step(self, command: str) -> str:
        with _quiet():
            self._state, _, _ = self._env.step(command)
        return str(self._state.feedback)

    def candidates(self) -> list[str]:
        return list(self._state["admissible_commands"] or [])

    def state_fields(self) -> dict[str, str]:
        return {"location": self._state["description"] or "", "inventory": self._state["inventory"] or ""}

    def played(self) -> dict[str, str]:
        return {}  # one game file, named by the task

    def goal(self) -> str:
        return ""  # the opening text states it

    def walkthrough(self) -> list[str]:
        return list(textworld.Game.load(str(self._path.with_suffix(".json"))).walkthrough or [])

    def close(self) -> None:
        self._env.close()


@dataclass
class TextWorldConfig(Checked):
    """TextWorld games generated by seed: one task per seed, e.g. "tw-simple-7" (configs/env/textworld.yaml)."""

    name: str = "textworld"
    """Environment name in results."""
    kind: str = "simple"
    """Game family: "simple" (tw-simple, 8 steps, dense reward) or "custom" (sized by the options below)."""
    seeds: list[int] = field(default_factory=lambda: [7])
    """Generation seeds, one game (task) each."""
    rewards: str = "dense"
    """simple only: reward frequency, dense | balanced | sparse."""
    goal: str = "detailed"
    """simple only: how the objective is stated, detailed | brief | none."""
    world_size: int = 3
    """custom only: number of rooms."""
    nb_objects: int = 4
    """custom only: minimum number of objects."""
    quest_length: int = 3
    """custom only: number of actions the quest needs."""
    game_dir: str | None = None
    """Where generated games are cached; default `cache_dir("textworld")`."""

    def check(self) -> None:
        name("name", self.name)
        one_of("kind", self.kind, KINDS)
        non_empty("seeds", self.seeds)
        for seed in self.seeds:
            at_least("seeds", seed, 0)
        one_of("rewards", self.rewards, ("dense", "balanced", "sparse"))
        one_of("goal", self.goal, ("detailed", "brief", "none"))
        at_least("world_size", self.world_size, 1)
        at_least("nb_objects", self.nb_objects, 1)
        at_least("quest_length", self.quest_length, 1)

    def use_run_dir(self, path: Path) -> None:
        return None  # games are cached by seed outside the run

    def regrader(self) -> Regrader | None:
        return None  # the game's score is final at every step

    def test_split(self) -> dict[str, str]:
        return {}  # games are made by seed: the split is the run's (held-out tasks or seeds)

    def shared(self) -> SharedCopies | None:
        return None  # each episode plays its own copy of the game

    def requirements(self) -> list[Requirement]:
        try:
            found, ok = " ".join(_tw_make()), True
        except UserError as e:
            found, ok = str(e), False
        return [Requirement("textworld", ok, found, "pip install textworld==1.7.0")]

    def game_files(self) -> GameFiles | None:
        return None  # tw-make generates each game on demand

    def options(self) -> dict[str, Any]:
        """The fields that the chosen kind passes to tw-make."""
        _options(self.kind, {})  # unknown kind -> UserError
        return {key: vars(self)[key] for key in KINDS[self.kind].defaults}

    def task_names(self) -> list[str]:
        return [game_name(self.kind, int(seed), **self.options()) for seed in self.seeds]

    def make(self, task: str) -> TextGameEnv:
        seeds = dict(zip(self.task_names(), self.seeds, strict=True))
        if task not in seeds:
            raise UserError(f"unknown TextWorld task {task!r}; this config has: {', '.join(seeds)}")
        out_dir = Path(self.game_dir).expanduser() if self.game_dir else None
        path = make_game(self.kind, int(seeds[task]), out_dir, **self.options())
        return TextGameEnv(TextWorldBackend(path), task)
