"""Files written whole or not at all, never through a link: what a command writes where a received run, an archive
or another process may have planted something."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from jitrl_bench.errors import UserError


def write_file(path: Path, data: str | bytes) -> Path:
    """`data` as `path`, whole or not at all: written to a new file beside it (created, never opened through a link),
    then renamed over it, so whatever was at `path` (a planted link too) is replaced, not written through."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, flags, 0o644)
    except OSError as e:
        raise UserError(f"{path} cannot be written ({e.strerror or e}): choose a folder you can write") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path} cannot be written ({e.strerror or e}): choose another path") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
