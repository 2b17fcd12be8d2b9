"""ALFWorld: household tasks in text (find, take, clean, heat, cool, light, place), played by ALFWorld's own engine:
TextWorld's PDDL env over ALFWorld's domain and grammar, with ALFWorld's object naming ("apple 1") on top.

A task of a run is one of ALFWorld's six task types; the episode's env seed picks a game of that type in the split
(`env.split`: train, valid_seen, valid_unseen, ALFWorld's training and in/out-of-distribution evaluation sets), or
`env.instance` fixes one. `env.games=official` reads the benchmark's files from `env.data_dir` (ALFWorld's layout,
as `alfworld-download` writes it; default `$ALFWORLD_DATA`); `env.games=sample` plays small games this project writes
(envs/text/alfworld_games.py) into its cache, so ALFWorld runs offline and in tests. A game is won when the task's
goal holds (score 1 of 1). The admissible commands come from the engine every step.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitrl_bench.checks import BadValue, Checked, name, non_empty, one_of, one_or_many
from jitrl_bench.contract import GameFiles, Regrader, Requirement, SharedCopies
from jitrl_bench.envs.text.alfworld_download import ALFWorldFiles, default_dest, official_requirement
from jitrl_bench.envs.text.alfworld_games import DATA_FOLDER, SPLITS, TASK_TYPES, write_sample
from jitrl_bench.envs.text.game import TextGameEnv
from jitrl_bench.envs.text.java_sims import check_instance, instance
from jitrl_bench.errors import UserError
from jitrl_bench.paths import cache_dir

MAX_GAME_BYTES = 20_000_000  # the official games are ~0.1 MB each: a bigger file is not a game
SKIPPED = ("movable", "Sliced")  # as ALFWorld's own loader: task variants its text engine does not support
_LOADING = threading.Lock()


@functools.lru_cache(maxsize=64)
def game_files(root: Path, split: str, task_type: str) -> tuple[Path, ...]:
    """The split's solvable games of one task type, sorted (a stable order: seed s plays the s-th). Kept per process:
    every task env of a run asks, and the official split has thousands of games to read."""
    folder = root / DATA_FOLDER / split
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (env.data_dir must hold ALFWorld's {DATA_FOLDER}/<split>/ folders)")
    found = []
    for traj in sorted(folder.glob("*/*/traj_data.json")):
        game = traj.parent / "game.tw-pddl"
        if any(skip in str(traj.parent.relative_to(folder)) for skip in SKIPPED) or not game.is_file():
            continue
        if _read(traj).get("task_type") == task_type and _read(game).get("solvable") is True:
            found.append(game)
    return tuple(found)


def _read(path: Path) -> dict[str, Any]:
    if path.is_symlink() or path.stat().st_size > MAX_GAME_BYTES:
        raise UserError(f"{path}: not an ALFWorld game file (a link, or larger than {MAX_GAME_BYTES} bytes)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not an ALFWorld game file ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not an ALFWorld game file (not a JSON object)")
    return data


class ALFWorldBackend:
    """One task type's games in a split, one engine (its planner library is loaded once per backend)."""

    def __init__(self, files: tuple[Path, ...], fixed: int | None, games: str, split: str) -> None:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs.pddl import PddlEnv

        infos = textworld.EnvInfos(won=True, admissible_commands=True, facts=True, policy_commands=True)
        with _LOADING:  # each engine loads its own copy of the planner library (its state is global)
            self._pddl = PddlEnv(infos)
        self._env = AlfredDemangler(env=self._pddl)
        self._files, self._fixed, self._games, self._split = files, fixed, games, split
        self._state: Any = None
        self._file: Path | None = None

    @property
    def score(self) -> float:
        return 1.0 if self.won else 0.0

    @property
    def max_score(self) -> float:
        return 1.0

    @property
    def won(self) -> bool:
        return bool(self._state is not None and self._state["won"])

    @property
    def lost(self) -> bool:
        return False  # nothing in ALFWorld's tasks cannot be undone

    def reset(self, seed: int | None) -> str:
        self._file = self._files[instance(range(len(self._files)), seed, self._fixed)]
        game = _read(self._file)  # read here (bounded, checked), not by the engine, which leaves the file open
        missing = [key for key in ("pddl_domain", "grammar", "pddl_problem") if not isinstance(game.get(key), str)]
        if missing:
            raise UserError(f"{self._file}: not an ALFWorld game file (no {', '.join(missing)})")
        self._env.load(game)
        self._state = self._env.reset()
        return str(self._state.feedback)

    def step(self, command: str) -> str:
        self._state, _, _ = self._env.step(command)
        return str(self._state.feedback)

    def candidates(self) -> list[str]:
        return [str(c) for c in self._state["admissible_commands"] or []]

    def _facts(self, fact: str) -> list[list[str]]:
        return [[a.name.strip() for a in f.arguments] for f in self._state["facts"] or [] if f.name == fact]

    def state_fields(self) -> dict[str, str]:
        """Where the agent stands (the receptacles at its location) and what it holds, from the engine's facts."""
        here = {loc for agent, loc in self._facts("atlocation") if agent == "agent1"}
        places = sorted(r for r, loc in self._facts("receptacleatlocation") if loc in here)
        held = sorted(o for agent, o in self._facts("holds") if agent == "agent1")
        return {"location": ", ".join(places) or "the middle of the room", "inventory": ", ".join(held) or "nothing"}

    def played(self) -> dict[str, str]:
        assert self._file is not None
        folder = self._file.parent
        return {"games": self._games, "split": self._split, "game": f"{folder.parent.name}/{folder.name}"}

    def goal(self) -> str:
        return ""  # the opening text states the task ("Your task is to: ...")

    def walkthrough(self) -> list[str]:
        """ALFWorld's planner's plan from the default game's start (the game is left reset to it)."""
        self.reset(None)
        return [str(c) for c in self._state["policy_commands"] or []]

    def close(self) -> None:
        """The planner library stays loaded (33 MB a copy), as TextWorld leaves it: a process that unloads two copies
        (fast_downward.close_lib) segfaults later, at exit or at its next load."""
        self._env.close()


@dataclass
class ALFWorldConfig(Checked):
    """ALFWorld by task type (configs/env/alfworld.yaml)."""

    name: str = "alfworld"
    """Environment name in results."""
    task_types: Any = "pick_and_place_simple"
    """A task type or a list of them: the run's tasks. Typed Any because OmegaConf cannot validate `str | list`."""
    split: str = "train"
    """train | valid_seen | valid_unseen (ALFWorld's in- and out-of-distribution evaluation games)."""
    games: str = "sample"
    """official: the benchmark's files in `data_dir`; sample: the project's own small games (offline, tests)."""
    data_dir: str | None = None
    """The ALFWorld data folder for `games=official` (it holds json_2.1.1/); null: $ALFWORLD_DATA, else the cache's
    copy from `jitrl-bench games download alfworld`."""
    instance: int | None = None
    """null: episode e plays the split's game at its env seed (run.seed + e); an index: every episode plays it."""
    sample_per_type: int = 4
    """`games=sample`: games written per task type and split."""

    def check(self) -> None:
        name("name", self.name)
        non_empty("task_types", self.task_names())
        for task in self.task_names():
            one_of("task_types", task, TASK_TYPES)
        one_of("split", self.split, SPLITS)
        one_of("games", self.games, ("official", "sample"))
        check_instance(self.instance)
        if self.sample_per_type < 1:
            raise BadValue("sample_per_type", self.sample_per_type, "at least 1")

    def task_names(self) -> list[str]:
        return one_or_many(self.task_types)

    def test_split(self) -> dict[str, str]:
        return {"split": "valid_unseen"}

    def use_run_dir(self, path: Path) -> None:
        return None

    def regrader(self) -> Regrader | None:
        return None  # the goal is checked by the engine at every step

    def shared(self) -> SharedCopies | None:
        return None  # each episode plays its own copy of the game

    def requirements(self) -> list[Requirement]:
        return [engine_requirement(), official_requirement(self.data_dir)]

    def game_files(self) -> GameFiles:
        return ALFWorldFiles(self.data_dir)

    def root(self) -> Path:
        if self.games == "sample":
            return write_sample(cache_dir() / "alfworld-sample", self.sample_per_type)
        configured = self.data_dir or os.environ.get("ALFWORLD_DATA")
        if configured:
            return Path(configured).expanduser()
        downloaded = default_dest()  # where `jitrl-bench games download alfworld` puts them
        if (downloaded / DATA_FOLDER).is_dir():
            return downloaded
        raise UserError(
            "env.games=official needs ALFWorld's files: jitrl-bench games download alfworld, or set env.data_dir "
            "(or $ALFWORLD_DATA) to the folder alfworld-download filled, or env.games=sample for the project's games"
        )

    def make(self, task: str) -> TextGameEnv:
        if task not in self.task_names():
            raise UserError(f"unknown ALFWorld task type {task!r}; this config has: {', '.join(self.task_names())}")
        root = self.root()
        files = game_files(root, self.split, task)
        if not files:
            raise UserError(f"no {task} game in {root / DATA_FOLDER / self.split} (env.games={self.games})")
        return TextGameEnv(ALFWorldBackend(files, self.instance, self.games, self.split), task)


PLANNER_PROBE = "import fast_downward; fast_downward.load_lib()"
"""Loads one copy of ALFWorld's planner library. In a process of its own: unloading copies (fast_downward.close_lib)
twice in one process segfaults it later (at exit or at the next load), and a broken build may crash on the load."""


def engine_requirement() -> Requirement:
    """ALFWorld's engine: its package and the planner library it plays on, loaded in a child process."""
    fix = "make setup (builds fast-downward-textworld: needs cmake and g++)"
    if importlib.util.find_spec("alfworld") is None or importlib.util.find_spec("fast_downward") is None:
        return Requirement("env=alfworld", False, "alfworld or fast-downward-textworld missing", fix)
    try:
        done = subprocess.run([sys.executable, "-c", PLANNER_PROBE], capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return Requirement("env=alfworld", False, "the planner library did not load within 60 s", fix)
    detail = "alfworld and fast-downward (planner loads)"
    if done.returncode < 0:
        detail = f"loading the planner library crashed (signal {-done.returncode})"
    elif done.returncode > 0:
        detail = "the planner library fails to load: " + done.stderr.decode(errors="replace").strip()[-300:]
    return Requirement("env=alfworld", done.returncode == 0, detail, fix)
