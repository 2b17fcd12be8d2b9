"""ScienceWorld: 30 elementary-science tasks (boil, melt, grow a plant, test conductivity, ...) in the simulator of
the `scienceworld` wheel, played as `TextGameEnv`s.

Each task has variations split by the benchmark into train / dev / test; `env.split` picks the split, and the
episode's env seed picks the variation in it (or `env.instance` fixes one for every episode). The score is the
simulator's 0-100; a task is won at 100 and lost below 0, as the simulator reports. Valid actions (hundreds per state)
are the candidates, at most `env.max_candidates` of them, the cut counted in each step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from jitrl_bench.checks import BadValue, Checked, at_least, each_one_of, name, non_empty, one_of
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

STEP_LIMIT = 1_000_000  # the simulator's own cut-off; run.max_steps is the budget
SIMPLIFICATIONS = ("easy", "teleportAction", "selfWateringFlowerPots", "openContainers", "openDoors",
                   "noElectricalAction")  # fmt: skip


def task_names() -> list[str]:
    """The simulator's task names, read from its wheel's task table (no JVM)."""
    spec = find_spec("scienceworld")
    locations = list(spec.submodule_search_locations or []) if spec else []
    table = Path(locations[0], "tasks.json") if locations else None
    if table is None or not table.is_file():
        raise UserError("ScienceWorld is not installed: make setup (or pip install scienceworld)")
    return [str(task["task_name"]) for task in json.loads(table.read_text(encoding="utf-8"))]


class ScienceWorldBackend:
    """One task of the simulator (its own JVM); each variation is loaded when an episode first plays it."""

    def __init__(self, task: str, split: str, fixed: int | None, simplifications: str) -> None:
        self._task, self._split, self._fixed, self._simplifications = task, split, fixed, simplifications
        self._sim = Simulator("ScienceWorld", self._start)
        self._instances = self.splits()[split]
        self._loaded: tuple[int, bool] | None = None
        self._info: dict[str, Any] = {}
        self._completed = False

    def _start(self) -> Any:
        from scienceworld import ScienceWorldEnv  # starts nothing until constructed

        env = ScienceWorldEnv("", envStepLimit=STEP_LIMIT)
        try:
            env.load(self._task, 0, self._simplifications)  # the variation lists are per loaded task
        except ValueError as error:  # the simulator's check, e.g. noElectricalAction on an electrical task
            close_once(env)
            raise UserError(f"env.simplifications for {self._task}: {error}") from None
        return env

    def splits(self) -> dict[str, list[int]]:
        """The task's variations in each split, as the simulator lists them."""
        with self._sim.calls() as env:
            calls = {"train": env.get_variations_train, "dev": env.get_variations_dev, "test": env.get_variations_test}
            return {split: [int(v) for v in call()] for split, call in calls.items()}

    @property
    def score(self) -> float:
        return float(self._info.get("score", 0))

    @property
    def max_score(self) -> float:
        return 100.0

    @property
    def won(self) -> bool:
        return self._completed and self.score >= 100

    @property
    def lost(self) -> bool:
        return self.score < 0

    def reset(self, seed: int | None, gold: bool = False) -> str:
        if self._sim.revive():
            self._loaded = None
        variation = instance(self._instances, seed, self._fixed)
        with self._sim.calls() as env:
            if self._loaded != (variation, gold):
                env.load(self._task, variation, self._simplifications, generateGoldPath=gold)
                self._loaded = (variation, gold)
            obs, self._info = env.reset()
            self._completed = bool(env.server.getCompleted())
        return str(obs)

    def step(self, command: str) -> str:
        with self._sim.calls() as env:
            obs, _, _, self._info = env.step(command)
            self._completed = bool(env.server.getCompleted())
        return str(obs)

    def candidates(self) -> list[str]:
        return [str(a) for a in self._info.get("valid", [])]

    def state_fields(self) -> dict[str, str]:
        return {"location": str(self._info.get("look", "")), "inventory": str(self._info.get("inv", ""))}

    def played(self) -> dict[str, str]:
        with self._sim.calls() as env:  # the simulator's own record: one step since the reset
            history = json.loads(str(env.server.getRunHistoryJSON()))
        return {"task": str(history.get("taskName", "")), "split": self._split,
                "instance": str(history.get("variationIdx", "")),
                "simplifications": str(history.get("simplifications", ""))}  # fmt: skip

    def goal(self) -> str:
        return str(self._info.get("taskDesc", "")).removeprefix("Task Description:").strip()

    def walkthrough(self) -> list[str]:
        """The simulator's gold path for the default variation, up to the step that completes the task (the path
        goes on past it, e.g. "examine steam" after boiling); the task is left reset to that variation."""
        self.reset(None, gold=True)
        with self._sim.calls() as env:
            path = [str(a) for a in env.get_gold_action_sequence()]
        for played, command in enumerate(path, start=1):
            self.step(command)
            if self._completed:
                path = path[:played]
                break
        self.reset(None, gold=True)
        return path

    def close(self) -> None:
        self._sim.close()


@dataclass
class ScienceWorldConfig(Checked):
    """ScienceWorld tasks by name, one task each (configs/env/scienceworld.yaml)."""

    name: str = "scienceworld"
    """Environment name in results."""
    tasks: list[str] = field(default_factory=lambda: ["boil"])
    """Task names from the simulator's table, e.g. [boil, melt, find-plant] (`env.tasks=[boil]`)."""
    split: str = "train"
    """The benchmark's split whose variations are played: train | dev | test."""
    instance: int | None = None
    """null: episode e plays the split's variation at its env seed (run.seed + e); an index: every episode plays it."""
    simplifications: list[str] = field(default_factory=list)
    """The simulator's simplifications, e.g. [easy] or [teleportAction, openDoors] ([] = none)."""
    max_candidates: int = 1000
    """Valid actions offered per step at most, first in the simulator's order (the cut count in each step)."""

    def check(self) -> None:
        name("name", self.name)
        non_empty("tasks", self.tasks)
        each_one_of("tasks", self.tasks, task_names())
        one_of("split", self.split, SPLITS)
        check_instance(self.instance)
        each_one_of("simplifications", self.simplifications, SIMPLIFICATIONS)
        if "easy" in self.simplifications and len(self.simplifications) > 1:
            raise BadValue("simplifications", self.simplifications, "[easy] alone (it stands for all the others)")
        at_least("max_candidates", self.max_candidates, 1)

    def task_names(self) -> list[str]:
        return [str(task) for task in self.tasks]

    def test_split(self) -> dict[str, str]:
        return {"split": "test"}

    def use_run_dir(self, path: Path) -> None:
        return None

    def regrader(self) -> Regrader | None:
        return None  # the simulator's score is final at every step

    def shared(self) -> SharedCopies | None:
        return None  # each episode plays its own copy of the task

    def requirements(self) -> list[Requirement]:
        return simulator_requirements(self.name, "scienceworld", "1.2.3")

    def game_files(self) -> GameFiles | None:
        return None  # the tasks are inside the simulator's jar

    def make(self, task: str) -> TextGameEnv:
        if task not in self.task_names():
            raise UserError(f"unknown ScienceWorld task {task!r}; this config has: {', '.join(self.task_names())}")
        require_java(self.name)
        backend = ScienceWorldBackend(task, self.split, self.instance, ",".join(self.simplifications))
        return TextGameEnv(backend, task, self.max_candidates)
