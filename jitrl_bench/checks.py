"""Config values checked when the config is composed, before any model, browser or game loads.

Every config dataclass that has knobs with a range or a closed set subclasses `Checked` and says what is allowed in
`check()`, with the helpers below. `check_tree` walks a composed config (nested dataclasses included) and turns the
first bad value into one line that names the full key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from jitrl_bench.errors import UserError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BadValue(ValueError):
    """A config value outside what its key allows; `key` is relative to the dataclass that raised it."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"{key}={_show(value)}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


class Checked:
    """A config dataclass whose values `check_tree` validates."""

    def check(self) -> None:
        """Raise BadValue for the first value outside what its key allows."""


def check_tree(config: object, path: str) -> None:
    """Check `config` and every dataclass nested in it (depth first); UserError naming the full key on the first
    bad value."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for f in dataclasses.fields(config):
            value = vars(config)[f.name]
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                suffix = f"[{i}]" if isinstance(value, list) else ""
                check_tree(item, f"{path}.{f.name}{suffix}")
    if isinstance(config, Checked):
        try:
            config.check()
        except BadValue as bad:
            raise UserError(f"{path}.{bad.key}={_show(bad.value)}: {bad.allowed}") from None


# ---- the helpers configs use in check() -------------------------------------------------------------------------


def one_of(key: str, value: object, allowed: Iterable[object]) -> None:
    options = list(allowed)
    if value not in options:
        raise BadValue(key, value, "choose one of " + ", ".join(str(o) for o in options))


def each_one_of(key: str, values: Sequence[object], allowed: Iterable[object]) -> None:
    options = list(allowed)
    for value in values:
        if value not in options:
            raise BadValue(key, value, "each must be one of " + ", ".join(str(o) for o in options))


def at_least(key: str, value: float, low: float, why: str = "") -> None:
    if not _finite(value) or value < low:
        raise BadValue(key, value, f"must be >= {low:g}" + (f" ({why})" if why else ""))


def above(key: str, value: float, low: float, why: str = "") -> None:
    if not _finite(value) or value <= low:
        raise BadValue(key, value, f"must be > {low:g}" + (f" ({why})" if why else ""))


def between(key: str, value: float, low: float, high: float, why: str = "") -> None:
    if not _finite(value) or not low <= value <= high:
        raise BadValue(key, value, f"must be in [{low:g}, {high:g}]" + (f" ({why})" if why else ""))


def finite(key: str, value: float) -> None:
    if not _finite(value):
        raise BadValue(key, value, "must be a finite number")


def name(key: str, value: str) -> None:
    """Names that become folder names and table labels: letters, digits, _ . + -, no path separators."""
    if not SAFE_NAME.match(str(value)):
        raise BadValue(key, value, "use letters, digits and _ . + - (no spaces or slashes), at most 64 characters")


def env_var_name(key: str, value: str | None) -> None:
    """A key that names an environment variable must hold a name, never the secret itself; the variable must be
    set, so a run does not fail at its first request."""
    if value is None:
        return
    if not ENV_VAR.match(value):
        raise BadValue(key, "***", "give the NAME of the environment variable that holds the key, not the key")
    if not os.environ.get(value):
        raise BadValue(key, value, f"${value} is not set in this environment; export it first")


def http_url(key: str, value: str) -> None:
    if not re.match(r"^https?://[^\s/]+", value):
        raise BadValue(key, value, "must be an http:// or https:// URL")


def one_or_many(value: Any) -> list[str]:
    """A key that takes one name or a list of names (`env.game=zork1`, `env.game=[zork1,zork3]`), as a list. Such keys
    are typed Any in their config: OmegaConf cannot validate a `str | list[str]` union."""
    return [value] if isinstance(value, str) else [str(item) for item in value]


def non_empty(key: str, values: Sequence[object]) -> None:
    if not values:
        raise BadValue(key, "[]", "give at least one")


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
