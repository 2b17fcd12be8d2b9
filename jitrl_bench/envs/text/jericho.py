"""Jericho: the classic interactive-fiction games (Zork, Detective, ...) played in frotz as `TextGameEnv`s."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jericho
import jericho.util

from jitrl_bench.checks import BadValue, Checked, name, non_empty, one_or_many
from jitrl_bench.contract import GameFiles, Regrader, Requirement, SharedCopies
from jitrl_bench.envs.text.game import TextGameEnv
from jitrl_bench.envs.text.roms import RomFiles, find_rom, rom_dir, rom_requirement, supported_games, validate_rom
from jitrl_bench.errors import UserError


@functools.cache
def _spacy(model: str) -> Any:
    """Jericho's valid-action search tokenises with spaCy and would try to download en_core_web_sm (fails offline).
    A blank English pipeline gives the same action lists on the games checked (detective, pentari, library)."""
    import spacy

    if model == "blank":
        return spacy.blank("en")
    try:
        return spacy.load(model)
    except OSError as error:
        raise UserError(
            f"spaCy model {model!r} is not installed: set env.spacy_model=blank or pip install it"
        ) from error


class JerichoBackend:
    """A supported Jericho game in frotz (the file must be validated first: see `games.validate_rom`).

    Candidates are `get_valid_actions()` (it tries each template action from a saved state: the slow part of a step,
    computed once per step and only when asked). The location is the game's own reply to "look", run on a saved state
    that is restored right after, so it spends no move and changes no randomness.
    """

    def __init__(self, rom: Path) -> None:
        self._env: Any = jericho.FrotzEnv(str(rom))
        self._candidates: list[str] | None = None

    @property
    def score(self) -> float:
        return float(self._env.get_score())

    @property
    def max_score(self) -> float:
        return float(self._env.get_max_score())

    @property
    def won(self) -> bool:
        return bool(self._env.victory())

    @property
    def lost(self) -> bool:
        return bool(self._env.game_over())

    def reset(self, seed: int | None) -> str:
        self._env.seed(seed)  # Jericho reads None and 0 as "the walkthrough's seed"
        obs, _ = self._env.reset()
        self._candidates = None
        return str(obs)

    def step(self, command: str) -> str:
        obs, _, _, _ = self._env.step(command)
        self._candidates = None
        return str(obs)

    def candidates(self) -> list[str]:
        if self._candidates is None:
            # use_parallel would start a process pool per env; the ctypes filter is fast enough in one process
            self._candidates = list(self._env.get_valid_actions(use_parallel=False))
        return self._candidates

    def state_fields(self) -> dict[str, str]:
        place = self._env.get_player_location()
        name = place.name if place is not None else ""
        look = self._look()
        location = look if name and name in look else f"{name}\n{look}"
        items = [item.name for item in self._env.get_inventory()]
        inventory = f"You are carrying: {', '.join(items)}." if items else "You are carrying nothing."
        return {"location": location, "inventory": inventory}

    def _look(self) -> str:
        if self.won or self.lost:
            return ""  # the game waits for RESTART/QUIT: "look" would not describe a room
        saved = self._env.get_state()
        try:
            text, _, _, _ = self._env.step("look")
        finally:
            self._env.set_state(saved)
        return str(text)

    def played(self) -> dict[str, str]:
        return {}  # one game file, named by the task

    def goal(self) -> str:
        return ""  # the opening text states it

    def walkthrough(self) -> list[str]:
        return list(self._env.get_walkthrough())

    def close(self) -> None:
        self._env.close()


@dataclass
class JerichoConfig(Checked):
    """Jericho games by name, one task each (configs/env/jericho.yaml)."""

    name: str = "jericho"
    """Environment name in results."""
    game: Any = "zork1"
    """Game name, or a list of names, from Jericho's supported-game table (`jitrl-bench games list`). Typed Any
    because OmegaConf cannot validate a `str | list[str]` union; `tasks()` normalises it."""
    rom_dir: str | None = None
    """Folder with the game files; default `$JITRL_BENCH_GAMES`, else the cache's jericho-games folder."""
    spacy_model: str = "blank"
    """spaCy pipeline for Jericho's valid actions: "blank" works offline, or an installed model's name."""

    def check(self) -> None:
        name("name", self.name)
        non_empty("game", self.task_names())
        folder = rom_dir(self.rom_dir)
        if not folder.is_dir():
            raise BadValue("rom_dir", folder, "no such folder: run `jitrl-bench games download`, or set env.rom_dir")
        if self.spacy_model != "blank" and importlib.util.find_spec(self.spacy_model) is None:
            raise BadValue(
                "spacy_model", self.spacy_model, "not installed: use blank (works offline) or pip install it"
            )

    def task_names(self) -> list[str]:
        """Unknown names are tasks too: each is reported and recorded as an error row while the others play."""
        return one_or_many(self.game)

    def use_run_dir(self, path: Path) -> None:
        return None

    def regrader(self) -> Regrader | None:
        return None  # the game's score is final at every step

    def test_split(self) -> dict[str, str]:
        return {}  # Jericho's games have no split of their own

    def shared(self) -> SharedCopies | None:
        return None  # each episode plays its own copy of the game

    def requirements(self) -> list[Requirement]:
        return [rom_requirement(self.rom_dir)]

    def game_files(self) -> GameFiles:
        return RomFiles(self.rom_dir)

    def make(self, task: str) -> TextGameEnv:
        if task not in self.task_names():
            raise UserError(f"unknown Jericho task {task!r}; this config has: {', '.join(self.task_names())}")
        path = find_rom(task, rom_dir(self.rom_dir))
        validate_rom(path, supported_games()[task][1])  # before frotz opens it: a bad file kills the process
        # Through importlib: `from ctypes import *` in jericho can shadow the `jericho.util` attribute with ctypes.util
        # when ctypes.util was imported first (e.g. by trio), and the assignment would then go nowhere.
        util: Any = importlib.import_module("jericho.util")
        util.spacy_nlp = _spacy(self.spacy_model)
        return TextGameEnv(JerichoBackend(path), task)
