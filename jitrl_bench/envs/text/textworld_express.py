"""TextWorld Express: fast generated text worlds (coin collector, cooking world, TextWorld Commonsense, map reader,
arithmetic, sorting, ...) from the simulator in the `textworld-express` wheel, played as `TextGameEnv`s.

Each game has the benchmark's own train / dev / test folds of instance seeds; `env.split` picks the fold, and the
episode's env seed picks the instance in it (or `env.instance` fixes one for every episode). Scores are the
simulator's, normalised to 0-1; won and lost are its task success and failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitrl_bench.checks import BadValue, Checked, name, non_empty, one_of, one_or_many
from jitrl_bench.contract import GameFiles, Regrader, Requirement, SharedCopies
from jitrl_bench.envs.text.game import TextGameEnv
from jitrl_bench.envs.text.java_sims import (
    SPLITS,
    Simulator,
    check_instance,
    close_once,
    instance,
    require_java,
    simulator_requirements,
)
from jitrl_bench.errors import UserError

GAMES = ("coin", "cookingworld", "twc", "mapreader", "arithmetic", "sorting", "simonsays", "peckingorder")
STEP_LIMIT = 1_000_000  # the simulator's own cut-off; run.max_steps is the budget
_PARAMS = re.compile(r"^([A-Za-z]+=\d+(,[A-Za-z]+=\d+)*)?$")


class TextWorldExpressBackend:
    """One game of the simulator (its own JVM). The state fields and valid actions come with every reply."""

    def __init__(self, game: str, params: str, split: str, fixed: int | None) -> None:
        self._game, self._params, self._split, self._fixed = game, params, split, fixed
        self._sim = Simulator("TextWorld Express", self._start)
        self._instances = self.splits()[split]
        self._info: dict[str, Any] = {}

    def _start(self) -> Any:
        from textworld_express import TextWorldExpressEnv  # starts nothing until constructed

        env = TextWorldExpressEnv(envStepLimit=STEP_LIMIT)
        try:
            env.load(self._game, self._params)
        except ValueError as error:  # the simulator's message, e.g. an unknown parameter
            close_once(env)
            raise UserError(f"env.params={self._params!r} for {self._game}: {error}") from None
        return env

    def splits(self) -> dict[str, list[int]]:
        """The game's instance seeds in each fold, as the simulator lists them."""
        with self._sim.calls() as env:
            server = env.server
            calls = {"train": server.getSeedsTrain, "dev": server.getSeedsDev, "test": server.getSeedsTest}
            return {split: [int(seed) for seed in call()] for split, call in calls.items()}

    @property
    def score(self) -> float:
        return float(self._info.get("score", 0.0))

    @property
    def max_score(self) -> float:
        return 1.0

    @property
    def won(self) -> bool:
        return bool(self._info.get("tasksuccess", False))

    @property
    def lost(self) -> bool:
        return bool(self._info.get("taskfailure", False))

    def reset(self, seed: int | None, gold: bool = False) -> str:
        self._sim.revive()
        game = instance(self._instances, seed, self._fixed)
        with self._sim.calls() as env:
            obs, self._info = env.reset(seed=game, gameFold=self._split, generateGoldPath=gold)
        return str(obs)

    def step(self, command: str) -> str:
        with self._sim.calls() as env:
            obs, _, _, self._info = env.step(command)
        return str(obs)

    def candidates(self) -> list[str]:
        return [str(a) for a in self._info.get("validActions", [])]

    def state_fields(self) -> dict[str, str]:
        return {"location": str(self._info.get("look", "")), "inventory": str(self._info.get("inventory", ""))}

    def played(self) -> dict[str, str]:
        with self._sim.calls() as env:
            properties = env.getGenerationProperties()  # the simulator's own record of the game it generated
        return {"game": self._game, "split": self._split, "instance": str(properties.get("seed", "")),
                "params": self._params}  # fmt: skip

    def goal(self) -> str:
        return str(self._info.get("taskDescription", ""))

    def walkthrough(self) -> list[str]:
        """The simulator's gold path for the default instance (the game is left reset to it)."""
        self.reset(None, gold=True)
        with self._sim.calls() as env:
            return [str(a) for a in env.getGoldActionSequence()]

    def close(self) -> None:
        self._sim.close()


@dataclass
class TextWorldExpressConfig(Checked):
    """TextWorld Express games by name, one task each (configs/env/textworld_express.yaml)."""

    name: str = "textworld_express"
    """Environment name in results."""
    game: Any = "coin"
    """A game name or a list of them (coin, cookingworld, twc, mapreader, arithmetic, sorting, simonsays,
    peckingorder). Typed Any because OmegaConf cannot validate a `str | list[str]` union."""
    params: str = ""
    """The simulator's game parameters, e.g. "numLocations=5,includeDoors=1" ("" = the game's defaults)."""
    split: str = "train"
    """The benchmark's fold whose instances are played: train | dev | test."""
    instance: int | None = None
    """null: episode e plays the fold's instance at its env seed (run.seed + e); an index: every episode plays it."""

    def check(self) -> None:
        name("name", self.name)
        non_empty("game", self.task_names())
        for game in self.task_names():
            one_of("game", game, GAMES)
        if not _PARAMS.match(self.params):
            raise BadValue("params", self.params, 'name=number pairs joined by commas, e.g. "numLocations=5"')
        one_of("split", self.split, SPLITS)
        check_instance(self.instance)

    def task_names(self) -> list[str]:
        return one_or_many(self.game)

    def test_split(self) -> dict[str, str]:
        return {"split": "test"}

    def use_run_dir(self, path: Path) -> None:
        return None

    def regrader(self) -> Regrader | None:
        return None  # the simulator's score is final at every step

    def shared(self) -> SharedCopies | None:
        return None  # each episode plays its own copy of the game

    def requirements(self) -> list[Requirement]:
        return simulator_requirements(self.name, "textworld_express", "1.1.0")

    def game_files(self) -> GameFiles | None:
        return None  # the tasks are inside the simulator's jar

    def make(self, task: str) -> TextGameEnv:
        if task not in self.task_names():
            raise UserError(f"unknown TextWorld Express task {task!r}; this config has: {', '.join(self.task_names())}")
        require_java(self.name)
        return TextGameEnv(TextWorldExpressBackend(task, self.params, self.split, self.instance), task)
