"""`jitrl-bench merge`: join the folders of a run's shards (`run.shard=i/n`) into one run directory.

Checked first: no shard holds a link (a shard is data, perhaps from another machine: see run/received.py), every
folder is a shard of the same run (same config hash, each shard once) and no memory stream was
played in two of them. The merged folder is then written by the same single writer a Ray run uses, episode by
episode in the sequential run's order (memory → notes → steps → rewards → episodes.jsonl), each shard's memory ids
renumbered into the merged memory. A shard that is missing leaves its streams unplayed: running the same overrides
with `run.dir=` the merged folder plays them (it is an ordinary run directory, resumable like any other).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from jitrl_bench.errors import UserError
from jitrl_bench.files import write_file
from jitrl_bench.memory.notebook import NOTES, Notebook
from jitrl_bench.memory.store import ExperienceMemory, read_meta
from jitrl_bench.records import EpisodeRecord
from jitrl_bench.run.memories import RunMemories
from jitrl_bench.run.received import buildable, check_run, read_config
from jitrl_bench.run.replica import Learned, Uses
from jitrl_bench.run.rundir import CONFIG, RunDirectory, existing_run, make_writable_dir
from jitrl_bench.run.spec import RunSpec, build_spec
from jitrl_bench.run.streams import Unit, parse_shard
from jitrl_bench.run.writer import RunWriter, Shipped
from jitrl_bench.terminal import say

OWN_FILES = {"steps", "rewards", "memory", "episodes.jsonl", CONFIG, "run.log", "summary.csv", "summary.md",
             "cost.csv", "curve.png", "report.html", "frontier.png"}  # fmt: skip
"""What the merge writes itself; anything else a shard holds (web HAR files) is copied over."""


@dataclass
class ShardDir:
    path: Path
    config: DictConfig
    rows: list[EpisodeRecord]
    files: RunDirectory

    @property
    def shard(self) -> str:
        return str(self.config.run.shard)

    @property
    def run_id(self) -> str:
        return str(self.config._meta.run_id)


def merge(paths: list[Path], out: Path, console: Console) -> Path:
    shards = [read_shard(p) for p in paths]
    spec = check(shards)
    make_writable_dir(out, "--out")
    if any(out.iterdir()):
        raise UserError(f"--out {out} is not empty: merge into a new folder")
    config = shards[0].config.copy()
    config.run.shard = None
    write_file(out / CONFIG, OmegaConf.to_yaml(config))
    run_dir = RunDirectory(out)
    memories = RunMemories(spec, run_dir, set(), fresh=True, run_id=shards[0].run_id)
    agents = [spec.agent.name, *(b.name for b in spec.baselines)]
    writer = RunWriter(memories, *uses_of(shards, agents))
    sources = {(r.task, r.episode, r.agent): (shard, r) for shard in shards for r in shard.rows}
    learned: dict[tuple[str, str], dict[str, Learned]] = {}
    for shard in shards:
        for agent in agents:
            notes = shard.path / "memory" / agent / NOTES
            by_uid = {} if not notes.exists() else notes_by_episode(Notebook(notes))
            store = open_store(shard, agent)
            if store is None:
                learned[(shard.shard, agent)] = {uid: Learned(notes=n) for uid, n in by_uid.items()}
                continue
            entries = list(store.records())
            imported = [int(r["id"]) for r in entries if r.get("run_id", "") != shard.run_id]
            writer.known(f"{shard.shard}:{agent}", {i: i for i in imported})  # memory.load_from: imported alike
            learned[(shard.shard, agent)] = by_episode(
                store, [r for r in entries if r.get("run_id", "") == shard.run_id]
            )
            for uid, notes_of in by_uid.items():
                learned[(shard.shard, agent)].setdefault(uid, Learned()).notes = notes_of
    tasks = list(dict.fromkeys([*spec.tasks(), *(r.task for s in shards for r in s.rows)]))
    for unit in order(tasks, agents, spec.run.episodes, sources):
        shard, record = sources[unit]
        if record.status == "error":  # a task that could not run, an episode lost to infrastructure: no steps
            run_dir.commit(record)
            continue
        record.artifacts = moved(record.artifacts, shard.path, out)
        lane = f"{shard.shard}:{record.agent}"
        writer.commit(lane, shipped(shard, record, learned.get((shard.shard, record.agent), {})))
    for shard in shards:
        copy_extra(shard.path, out)
    missing = sorted(set(range(parse_shard(shards[0].shard).count)) - {parse_shard(s.shard).index for s in shards})
    if missing:
        n = parse_shard(shards[0].shard).count
        say(console, f"{', '.join(f'{i}/{n}' for i in missing)} missing: their streams are not in {out}; the same "
                     f"overrides with run.dir={out} play them", "shards", "yellow")  # fmt: skip
    return out


def read_shard(path: Path) -> ShardDir:
    check_run(path)
    run = existing_run(path)
    config = buildable(read_config(path), "config")  # no interpolation, only jitrl_bench's own classes
    try:
        str(config._meta.config_hash), str(config.run.shard)
    except Exception as e:
        raise UserError(f"{path / CONFIG} is not a jitrl-bench run config ({type(e).__name__})") from None
    if config.run.get("shard") is None:
        raise UserError(f"{path} is not a shard (its run.shard is null): merge joins runs made with run.shard=i/n")
    return ShardDir(path, config, run.finished(), run)


def check(shards: list[ShardDir]) -> RunSpec:
    """Same run, each shard once, no stream in two shards; the run's spec (for its task and agent order)."""
    first = shards[0]
    for shard in shards[1:]:
        if str(shard.config._meta.config_hash) != str(first.config._meta.config_hash):
            raise UserError(
                f"{shard.path} and {first.path} are shards of different runs (config hash "
                f"{shard.config._meta.config_hash} vs {first.config._meta.config_hash}): merge the shards of one run"
            )
    names = [s.shard for s in shards]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"shard {twice[0]} is given twice: give each shard's folder once")
    owner: dict[tuple[str, str], Path] = {}
    for shard in shards:
        for pair in {(r.task, r.agent) for r in shard.rows}:
            if pair in owner:
                raise UserError(f"{pair[1]} on {pair[0]} was played in both {owner[pair]} and {shard.path}")
            owner[pair] = shard.path
    science = {k: v for k, v in OmegaConf.to_container(first.config).items() if k != "_meta"}  # type: ignore[union-attr]
    return build_spec(OmegaConf.create(science))


def uses_of(shards: list[ShardDir], agents: list[str]) -> tuple[dict[str, Uses], int, str]:
    uses, dim, embedder = {}, 0, ""
    for agent in agents:
        folders = [s.path / "memory" / agent for s in shards]
        memory = any((f / "meta.json").exists() for f in folders)
        uses[agent] = Uses(memory, any((f / NOTES).exists() for f in folders))
        for folder in folders:
            if (folder / "meta.json").exists():
                meta = read_meta(folder / "meta.json")
                dim, embedder = int(meta["dim"]), str(meta.get("embedder", ""))
    return uses, dim, embedder


def open_store(shard: ShardDir, agent: str) -> ExperienceMemory | None:
    folder = shard.path / "memory" / agent
    if not (folder / "meta.json").exists():
        return None
    committed = {r.episode_uid for r in shard.rows}
    dim = int(read_meta(folder / "meta.json")["dim"])
    return ExperienceMemory(folder, dim, gamma=1.0, committed=committed.__contains__, read_only=True,
                            own_run=shard.run_id)  # fmt: skip


def order(tasks: list[str], agents: list[str], episodes: int, sources: dict[Unit, Any]) -> list[Unit]:
    """The sequential run's commit order: task by task, a task's error rows first, then episode by episode."""
    units = [(t, e, a) for t in tasks for e in range(-1, episodes) for a in agents]
    return [u for u in units if u in sources]


def by_episode(store: ExperienceMemory, entries: list[dict[str, Any]]) -> dict[str, Learned]:
    """The store's entries grouped by the episode that wrote them, in id order, with their embeddings."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault(str(entry["episode"]), []).append(entry)
    return {
        uid: Learned(group, store.embeddings_of([int(r["id"]) for r in group]).astype("<f4").tobytes(), [], store.dim,
                     store.embedder)
        for uid, group in groups.items()
    }  # fmt: skip


def notes_by_episode(notebook: Notebook) -> dict[str, list[dict[str, Any]]]:
    """A shard's notes grouped by the episode that wrote them (read once per shard and agent)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for note in notebook.all():
        groups.setdefault(note.uid, []).append(asdict(note))
    return groups


def shipped(shard: ShardDir, record: EpisodeRecord, learned_by_uid: dict[str, Learned]) -> Shipped:
    steps_file, rewards_file = shard.files.steps_path(record), shard.files.rewards_path(record)
    steps = [json.loads(line) for line in steps_file.read_text().splitlines()] if steps_file.exists() else []
    rewards: dict[str, Any] = json.loads(rewards_file.read_text()) if rewards_file.exists() else {}
    rewards.pop("episode_uid", None)
    return Shipped(record, steps, rewards, learned_by_uid.get(record.episode_uid, Learned()))


def moved(artifacts: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """Artifact paths inside the shard's folder, pointed at the merged folder's copy."""
    return {k: str(v).replace(str(old), str(new), 1) if isinstance(v, str) and v.startswith(str(old)) else v
            for k, v in artifacts.items()}  # fmt: skip


def copy_extra(shard: Path, out: Path) -> None:
    for item in shard.iterdir():
        if item.name in OWN_FILES or item.name.startswith("."):
            continue
        if item.is_dir() and not item.is_symlink():  # read_shard refused links; never follow one appearing since
            shutil.copytree(item, out / item.name, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(item, out / item.name, follow_symlinks=False)
