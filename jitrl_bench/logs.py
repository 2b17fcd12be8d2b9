"""Library warnings and logs go to a log file, never as a flood on the user's terminal.

`quiet_libraries()` runs before any heavy import: Python warnings become log records, model loaders stop printing
progress bars, vLLM leaves logging to us. Records go to the cache's log (`<cache>/logs/jitrl-bench.log`) and, while a
run plays, also to the run's own `run.log`. Errors the user must act on are ours to print, as one line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jitrl_bench.paths import cache_dir

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "VLLM_CONFIGURE_LOGGING": "0",  # vLLM's records reach the root logger, i.e. our files
    "PYTHONWARNINGS": "ignore",  # for worker processes (vLLM's engine core): their warnings would hit the terminal
}
_configured = False
_files: list[Path] = []  # the log files in use, innermost last


def quiet_libraries() -> None:
    """Route warnings and library logs to the log file; set the libraries' own switches (unless the user set them)."""
    global _configured
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if _configured:
        return
    _configured = True
    logging.captureWarnings(True)  # warnings.warn(...) -> the "py.warnings" logger -> the handlers below
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):  # a library's console handler would print what belongs in the file
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    _files.append(cache_dir("logs") / "jitrl-bench.log")
    root.addHandler(_file_handler(_files[-1]))


@contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Also write every log record (and captured warning) to `path` while the block runs."""
    handler = _file_handler(path)
    root = logging.getLogger()
    root.addHandler(handler)
    _files.append(path)
    try:
        yield
    finally:
        _files.remove(path)
        root.removeHandler(handler)
        handler.close()


@contextmanager
def process_output_to_log() -> Iterator[None]:
    """Point this process's stdout and stderr (file descriptors 1 and 2) at the current log file while the block
    runs. For engines that print from C code or from worker processes they start (vLLM's engine core keeps the
    descriptors it was started with, so it keeps writing to the log, not to the terminal)."""
    path = _files[-1] if _files else cache_dir("logs") / "jitrl-bench.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _file_handler(path: Path) -> logging.FileHandler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler
