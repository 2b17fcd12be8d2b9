"""Hydra composition from configs/, validated against the dataclass each group's `_target_` names.

Every bad input (override syntax, unknown group option, unknown key, wrong type) becomes a `UserError` with one line
that names the key and, where there is a closed set, the valid choices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jitrl_bench.errors import UserError
from jitrl_bench.paths import CONFIG_DIR
from jitrl_bench.runner import RunConfig

GROUPS = ("env", "policy", "agent", "memory", "experiment")
SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.IGNORECASE)


@dataclass
class RunSpec:
    """The composed, validated run: one typed object per config group."""

    env: Any
    policy: Any
    agent: Any
    baselines: list[Any]
    memory: Any
    run: RunConfig
    raw: DictConfig


def choices(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def compose_config(overrides: list[str], config_dir: Path = CONFIG_DIR) -> DictConfig:
    _check_group_choices(overrides, config_dir)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base=None):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise UserError(_one_line(e)) from None


def build_spec(cfg: DictConfig, config_dir: Path = CONFIG_DIR) -> RunSpec:
    run = _typed("run", cfg.run, RunConfig)
    baselines = []
    for name in dict.fromkeys(run.baselines):
        if name == cfg.agent.get("name"):
            continue
        if name not in choices("agent", config_dir):
            raise UserError(
                f"run.baselines: unknown agent {name!r}; choose from {', '.join(choices('agent', config_dir))}"
            )
        baselines.append(instantiate_group(f"baseline {name}", OmegaConf.load(config_dir / "agent" / f"{name}.yaml")))
    return RunSpec(
        env=instantiate_group("env", cfg.env),
        policy=instantiate_group("policy", cfg.policy),
        agent=instantiate_group("agent", cfg.agent),
        baselines=baselines,
        memory=instantiate_group("memory", cfg.memory),
        run=run,
        raw=cfg,
    )


def load_spec(overrides: list[str]) -> RunSpec:
    return build_spec(compose_config(overrides))


def resolved_yaml(cfg: DictConfig) -> str:
    """The resolved config with secret-looking values redacted (what config.yaml holds)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    return OmegaConf.to_yaml(OmegaConf.create(_redact(data)))


def config_hash(cfg: DictConfig) -> str:
    """Identity of a run's science: everything but where it is written and how it is displayed."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    run = dict(data.get("run", {}))
    for key in ("dir", "progress"):
        run.pop(key, None)
    data["run"] = run
    return hashlib.sha1(OmegaConf.to_yaml(OmegaConf.create(_redact(data))).encode()).hexdigest()[:12]


def instantiate_group(group: str, node: Any) -> Any:
    if "_target_" not in node:
        raise UserError(f"{group}: config has no _target_ (which class builds it?)")
    module_name, _, class_name = str(node._target_).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{group}._target_={node._target_!r} cannot be imported: {e}") from None
    fields = OmegaConf.create({k: v for k, v in node.items() if k != "_target_"})
    return _typed(group, fields, cls)


def _typed(group: str, node: Any, cls: type) -> Any:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        msg = str(getattr(e, "msg", "") or e).splitlines()[0]
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


def _one_line(e: Exception) -> str:
    text = str(e).strip()
    m = re.search(r"Could not override '([^']+)'", text)
    if m and "not in struct" in f"{text} {e.__cause__}":
        key = m.group(1)
        return f"unknown key {key!r}; see the keys of configs/{key.split('.')[0]}/ (or add it with +{key}=VALUE)"
    m = re.search(r"Error parsing override '([^']+)'", text)
    if m:
        return f"cannot parse override {m.group(1)!r}: use KEY=VALUE (lists as [a,b], sweeps as a,b)"
    return text.splitlines()[0]


def _redact(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v else _redact(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [_redact(v) for v in data]
    return data
