"""A run directory is data, wherever it came from: read without following links, interpolating, or importing.

Runs travel (a colleague's, a cluster's, a shard from another machine) and `report`, `table`, `merge` and `regrade`
read them. So a symbolic link or other non-file inside a run is refused (it would read, or write through, something
outside the run), a file is read only up to a cap and only as UTF-8, and config.yaml is parsed as plain YAML: no
`${...}` interpolation, no resolvers, no aliases (a crafted `${oc.env:OPENAI_API_KEY}` stays that text), and only the
project's own `_target_`s are built from it. Every file those commands write is a new file renamed into place, so a
link planted at the output path is replaced, never followed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from jitrl_bench.errors import UserError
from jitrl_bench.run.rundir import CONFIG

CONFIG_BYTES = 16 * 2**20
"""config.yaml is a few KB; anything past this is not one."""
FILE_BYTES = 2**30
"""Any one file of a run (episodes.jsonl, a steps file, a HAR); past this it is refused, never read into memory."""
OURS = "jitrl_bench."
"""The only `_target_`s built from a run's config: classes of this package."""
_INTERPOLATION = re.compile(r"(\\*)\$\{")


def check_run(path: Path) -> None:
    """Refuse a run (or sweep) folder holding a symbolic link, a device or pipe, or a file past `FILE_BYTES`: one
    line naming it. `path` itself may be a link (the reader's own shortcut); nothing inside it may."""
    if not path.is_dir():
        return  # "no such run directory" is said where the path is used
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            raise UserError(f"{folder} cannot be read ({e.strerror or e})") from None
        for entry in entries:
            inner = Path(entry.path)
            if entry.is_symlink():
                raise UserError(f"{inner} is a symbolic link inside the run: replace it with the file it points to")
            if entry.is_dir(follow_symlinks=False):
                stack.append(inner)
            elif not entry.is_file(follow_symlinks=False):
                raise UserError(f"{inner} is not a regular file (a pipe, socket or device): remove it from the run")
            elif entry.stat(follow_symlinks=False).st_size > FILE_BYTES:
                raise UserError(f"{inner} is larger than {FILE_BYTES >> 20} MiB: not a file a run writes")


def _open_regular(path: Path) -> int:
    """A read descriptor of `path` if it is a regular file reached without a link; else one line naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # O_NONBLOCK: a planted pipe cannot hang us
    except OSError as e:
        if path.is_symlink():
            raise UserError(f"{path} is a symbolic link inside the run: replace it with the file it points to") from e
        raise UserError(f"{path} cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a regular file: remove it from the run")
    return fd


def read_bytes(path: Path, cap: int = FILE_BYTES) -> bytes:
    """The file's bytes, if it is a regular file (not a link) of at most `cap` bytes; else one line naming it."""
    with os.fdopen(_open_regular(path), "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise UserError(f"{path} is larger than {cap >> 20} MiB: not a file a run writes")
    return data


def read_lines(path: Path, cap: int = FILE_BYTES) -> Iterator[bytes]:
    """The file's lines (each with its newline, the last one perhaps without), read as `read_bytes` reads, but a
    line at a time: a reader of a long log never holds the whole file."""
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        read = 0
        for line in f:
            read += len(line)
            if read > cap:
                raise UserError(f"{path} is larger than {cap >> 20} MiB: not a file a run writes")
            yield line


def read_text(path: Path, cap: int = FILE_BYTES) -> str:
    """The file as UTF-8 text (see `read_bytes`); one line naming it when it is not UTF-8."""
    data = read_bytes(path, cap)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}): restore it from a copy") from None


class _PlainLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type stubs
    """YAML without aliases (`*name`): a few lines of them expand to billions of values for whoever walks the tree."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not used in a run config")
        return super().compose_node(parent, index)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.yaml as plain data, every value the literal text it holds (`${...}` is never resolved)."""
    path = run_dir / CONFIG
    text = read_text(path, CONFIG_BYTES)
    try:
        data = yaml.load(text, Loader=_PlainLoader)  # a SafeLoader: plain data, no objects
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not a readable run config ({type(e).__name__}): restore it from a copy") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a run config (a YAML mapping at the top): restore it from a copy")
    return data


def buildable(data: Any, where: str) -> DictConfig:
    """A node of a received config ready for `instantiate_group`: every `_target_` in it one of ours, and every
    string escaped so OmegaConf keeps it literal (`${oc.env:...}` stays text, never reads the reader's environment)."""
    _check_targets(data, where)
    node = OmegaConf.create(_escaped(data if isinstance(data, dict) else {}))
    assert isinstance(node, DictConfig)
    return node


def _check_targets(data: Any, where: str) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "_target_" and not (isinstance(value, str) and value.startswith(OURS)):
                raise UserError(
                    f"{where}._target_={str(value)[:80]!r} in a run's config.yaml is not a jitrl-bench class "
                    f"({OURS}*): a run's config builds only those"
                )
            _check_targets(value, f"{where}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _check_targets(value, f"{where}[{i}]")


def _escaped(data: Any) -> Any:
    """OmegaConf reads `\\${` as a literal `${`, and 2n backslashes before it as n: so n backslashes become 2n+1."""
    if isinstance(data, dict):
        return {key: _escaped(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_escaped(value) for value in data]
    if isinstance(data, str):
        return _INTERPOLATION.sub(lambda m: "\\" * (2 * len(m.group(1)) + 1) + "${", data)
    return data
