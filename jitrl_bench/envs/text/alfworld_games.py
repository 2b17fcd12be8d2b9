"""Small ALFWorld games of the project's own: one room, a few receptacles and the task's objects, written as ALFWorld's
game files (`game.tw-pddl`: ALFWorld's PDDL domain and text grammar as its wheel ships them, plus a problem written
here; `traj_data.json`: the task type and its parameters) in the official folder layout, so the env reads them exactly
as it reads the downloaded set. ALFWorld's own engine (TextWorld's PDDL env, fast-downward) plays them.

They exist so ALFWorld runs offline and in tests: each is solvable (the planner finds a plan from the start), one per
task type and seed, deterministic from (split, task type, index). They are not the benchmark's 3,553 training and
274 evaluation games, and results on them are labelled `games: sample`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

TASK_TYPES = ("pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
              "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place")  # fmt: skip
"""ALFWorld's six task types, in its own numbering (1-6)."""
SPLITS = ("train", "valid_seen", "valid_unseen")
"""ALFWorld's folders: the training games, then the evaluation games in rooms seen and unseen in training."""
DATA_FOLDER = "json_2.1.1"

PLACES = ("CounterTop", "DiningTable", "Shelf", "SideTable", "Desk", "Dresser", "CoffeeTable", "Sofa")
CLOSED = ("Cabinet", "Drawer")
"""Receptacles the task may need (the sink, the microwave, the fridge, a lamp's table) are added by the task."""
OBJECTS = {
    "pick_and_place_simple": ("Apple", "Book", "Mug", "Pen", "KeyChain", "Bowl"),
    "look_at_obj_in_light": ("Book", "CD", "KeyChain", "Pen", "Pencil"),
    "pick_clean_then_place_in_recep": ("Apple", "Mug", "Plate", "Cup", "Tomato"),
    "pick_heat_then_place_in_recep": ("Apple", "Potato", "Egg", "Mug", "Tomato"),
    "pick_cool_then_place_in_recep": ("Apple", "Potato", "Egg", "Mug", "Tomato"),
    "pick_two_obj_and_place": ("Apple", "Book", "Pen", "CD", "Candle"),
}
TOOL = {"pick_clean_then_place_in_recep": ("SinkBasin", "cleanable"),
        "pick_heat_then_place_in_recep": ("Microwave", "heatable"),
        "pick_cool_then_place_in_recep": ("Fridge", "coolable")}  # fmt: skip
SPLIT_SALT = {"train": 0, "valid_seen": 1_000, "valid_unseen": 2_000}


def _name(kind: str, rng: random.Random) -> str:
    """An ALFRED-style object id (type and position) as ALFWorld's problems spell it (`|` as _bar_, `.` as _dot_)."""
    x, y, z = (f"{rng.uniform(-3, 3):+06.2f}" for _ in range(3))
    spelled = "_bar_".join([kind, x, y, z])
    return spelled.replace("+", "_plus_").replace("-", "_minus_").replace(".", "_dot_")


def problem(task_type: str, index: int, split: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The PDDL problem of one game, its traj_data (task type and parameters, as ALFRED records them) and the names
    that fill the goal's templates."""
    from alfworld.gen import goal_library

    rng = random.Random(f"{split}/{task_type}/{index}")
    rooms = PLACES if split != "valid_unseen" else PLACES[::-1]  # unseen rooms: other receptacles first
    places = rng.sample(rooms[:6], 4)
    target_kind, source_kinds = places[0], places[1:]
    receptacles = [(kind, _name(kind, rng)) for kind in places]
    receptacles += [(kind, _name(kind, rng)) for kind in rng.sample(CLOSED, rng.randint(1, 2))]
    kind = rng.choice(OBJECTS[task_type])
    count = 2 if task_type == "pick_two_obj_and_place" else 1
    objects = [(kind, _name(kind, rng), _name_of(receptacles, rng.choice(source_kinds))) for _ in range(count)]
    toggle = ""
    facts = []
    if task_type in TOOL:
        tool, ability = TOOL[task_type]
        receptacles.append((tool, _name(tool, rng)))
        facts += [f"({ability} {obj})" for _, obj, _ in objects]
    if task_type == "look_at_obj_in_light":
        toggle, lamp, table = "DeskLamp", _name("DeskLamp", rng), _name_of(receptacles, target_kind)
        objects.append(("DeskLamp", lamp, table))
        facts += [f"(toggleable {lamp})"]
    facts += [f"(openable {r})" for k, r in receptacles if k in (*CLOSED, "Microwave", "Fridge")]
    locations = [f"loc_bar_{i}_bar_{rng.randint(-9, 9)}_bar_0_bar_30" for i in range(len(receptacles) + 1)]
    facts.append(f"(atLocation agent1 {locations[0]})")
    for (k, r), loc in zip(receptacles, locations[1:], strict=True):
        facts += [f"(receptacleType {r} {k}Type)", f"(receptacleAtLocation {r} {loc})"]
    at = {r: loc for (_, r), loc in zip(receptacles, locations[1:], strict=True)}
    for k, obj, inside in objects:
        facts += [
            f"(objectType {obj} {k}Type)",
            f"(inReceptacle {obj} {inside})",
            f"(objectAtLocation {obj} {at[inside]})",
        ]
        facts += [] if k == "DeskLamp" else [f"(pickupable {obj})"]
    rtypes = sorted({k for k, _ in receptacles})
    otypes = sorted({k for k, _, _ in objects})
    facts += [f"(canContain {rt}Type {ot}Type)" for rt in rtypes for ot in otypes]
    declared = ["agent1 - agent", *(f"{o} - object" for _, o, _ in objects),
                *(f"{r} - receptacle" for _, r in receptacles), *(f"{t}Type - otype" for t in otypes),
                *(f"{t}Type - rtype" for t in rtypes), *(f"{loc} - location" for loc in locations)]  # fmt: skip
    params = {"object_target": kind, "parent_target": target_kind, "toggle_target": toggle, "mrecep_target": "",
              "object_sliced": False}  # fmt: skip
    fill = {"obj": kind, "recep": target_kind, "toggle": toggle, "mrecep": ""}
    goal = str(goal_library.gdict[task_type]["pddl"]).format(**fill).replace("#", "-")
    text = "(define (problem plan_{})\n(:domain alfred)\n(:objects\n{}\n)\n(:init\n{}\n)\n{}".format(
        f"{split}_{task_type}_{index}", "\n".join(declared), "\n".join(sorted(set(facts))), goal.strip()
    )
    traj = {"task_type": task_type, "pddl_params": params, "jitrl_bench": {"sample": index, "split": split}}
    return text, traj, {k: v.lower() for k, v in fill.items()}


def _name_of(receptacles: list[tuple[str, str]], kind: str) -> str:
    return next(r for k, r in receptacles if k == kind)


def write_sample(root: Path, per_type: int = 4) -> Path:
    """`per_type` games per task type in each split under `root/json_2.1.1/<split>/<task>/trial_<n>/` (written once;
    existing files are kept). Returns `root`."""
    from alfworld.gen import goal_library
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

    domain, grammar = Path(ALFRED_PDDL_PATH).read_text(), Path(ALFRED_TWL2_PATH).read_text()
    for split in SPLITS:
        for task_type in TASK_TYPES:
            for index in range(per_type):
                folder = root / DATA_FOLDER / split / f"{task_type}-sample" / f"trial_{SPLIT_SALT[split] + index:04d}"
                if (folder / "game.tw-pddl").is_file():
                    continue
                text, traj, fill = problem(task_type, index, split)
                templates = goal_library.gdict[task_type]["templates"]  # as ALFWorld's templated goals, picked by index
                goal = str(templates[index % len(templates)]).format(**fill)
                game = {"pddl_domain": domain, "grammar": grammar.replace("UNKNOWN GOAL", goal), "pddl_problem": text,
                        "solvable": True}  # fmt: skip
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "traj_data.json").write_text(json.dumps(traj))
                partial = folder / "game.tw-pddl.part"
                partial.write_text(json.dumps(game))
                partial.replace(folder / "game.tw-pddl")  # complete or absent, never half-written
    return root
