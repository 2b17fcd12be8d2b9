"""The package's layout holds: no import circle, the environments reached only through the seams, files of a readable
size. Read from the source itself (its module-level imports), so a change that breaks the layout fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jitrl_bench"

ENV_IMPORTERS: dict[str, str] = {}
"""Modules outside `envs/` allowed to import from it, and why: none. Every other room reads environments through
`contract` and the config: the web action language WebRL answers in is `contract/web_actions.py`, re-grading goes
through `EnvConfig.regrader`, and `doctor` and `games` ask each env's config for its needs
(`EnvConfig.requirements`, `EnvConfig.game_files`). Mutant (tried): `cli.py` importing `envs.text.roms` for
`games list` fails here naming it."""

ROOMS = (
    ("errors", "text", "paths", "terminal", "timing", "machine", "children", "batching", "records"),
    ("checks", "logs", "net", "replies", "files"),
    ("memory", "prices"),
    ("contract", "jitrl"),
    ("config", "policies", "leases"),
    ("envs", "rewards"),
    ("agents", "run"),
    ("results", "regrade"),
    ("experiment", "commands", "jitrl_bench"),
    ("bench", "reproduce", "sweep", "doctor"),
    ("cli",),
    ("__main__",),
)
"""The package's rooms (top-level modules and folders) from the floor up: the floor (errors, text, the records a run
writes, bounded HTTP), what persists (memory, prices), the seams (contract) and the algorithm's pure functions (jitrl),
the group configs' Hydra layer (config) beside the policies, then environments and rewards, agents and the run loop,
what reads a run's files (results), one run end to end (experiment), the commands, the CLI. A room imports only rooms
below it; two rooms on one level import neither of each other."""

LONG_FILES: dict[str, int] = {}
"""Files allowed past `MAX_LINES`, with their ceiling and why (none now: the served choice mode is served_choice.py)."""
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """What a module imports when it is loaded: module-level statements, not those under TYPE_CHECKING or inside
    functions (those run later, or never)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(statement, ast.ImportFrom) and statement.module:
                found.add(statement.module)
                found.update(f"{statement.module}.{alias.name}" for alias in statement.names)
            elif isinstance(statement, ast.Import):
                found.update(alias.name for alias in statement.names)
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_no_module_imports_itself_through_others() -> None:
    """Mutant (tried): `jitrl_bench/text.py` importing `jitrl_bench.contract`, which imports text.py: the circle
    contract -> contract.agent -> contract.policy -> text -> contract is named."""
    graph = _graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def _room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_rooms_import_only_downward() -> None:
    """Every import statement counts here (in functions and under TYPE_CHECKING too: a type named upward is a
    dependency upward). Mutant (tried): `config.py` naming `RunSpec` from `run/spec.py` under TYPE_CHECKING fails
    with config -> run."""
    level = {room: i for i, rooms in enumerate(ROOMS) for room in rooms}
    upward, unplaced = set(), set()
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jitrl_bench.")):
                continue
            here, there = _room(name), _room(node.module)
            unplaced |= {room for room in (here, there) if room not in level}
            if here != there and here in level and there in level and level[there] >= level[here]:
                upward.add(f"{name} -> {node.module}")
    assert not unplaced, f"place these rooms in ROOMS: {sorted(unplaced)}"
    assert not upward, f"imports that do not go down a room: {sorted(upward)}"


def test_only_the_named_modules_outside_envs_import_an_environment() -> None:
    """Inside functions too: any import statement counts here."""
    outside = {}
    for name, path in _modules().items():
        if name.startswith("jitrl_bench.envs"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            else:
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for module in modules:
                if module.startswith("jitrl_bench.envs"):
                    outside.setdefault(name, set()).add(module)
    assert set(outside) <= set(ENV_IMPORTERS), {k: v for k, v in outside.items() if k not in ENV_IMPORTERS}


def test_files_stay_readable() -> None:
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    too_long = {f: n for f, n in lengths.items() if n > LONG_FILES.get(f, MAX_LINES)}
    assert not too_long, f"split these (one concept per module): {too_long}"


def test_modules_named_in_the_code_exist() -> None:
    """A module named in backquotes in the package's docstrings and comments (`run/episode.py`, `cli.py`) is a file
    of the package or the repository: a moved module leaves no stale pointer. Mutant (tried): the episode loop's
    docstring naming `ray.py`, the Ray scheduler's name before it moved, fails here."""
    stale = set()
    for path in PACKAGE.rglob("*.py"):
        for named in re.findall(r"`([\w/]+\.py)`", path.read_text()):
            found = (p for p in PACKAGE.rglob(named.rsplit("/", 1)[-1]) if str(p).endswith(f"/{named}"))
            if next(found, None) is None and not (PACKAGE.parent / named).is_file():
                stale.add(f"{path.relative_to(PACKAGE)} names {named}")
    assert not stale, sorted(stale)
