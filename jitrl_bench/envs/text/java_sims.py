"""What ScienceWorld and TextWorld Express share: simulators written in Java, shipped as jars inside their wheels and
driven over py4j, whose tasks come in the benchmark's own train / dev / test splits of numbered instances."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from jitrl_bench.checks import BadValue
from jitrl_bench.contract import Requirement
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.text import first_line

SPLITS = ("train", "dev", "test")
MIN_JAVA = 11
JAVA_HINT = "make setup installs it (apt-get install default-jre-headless), or put a java >= 11 on PATH"


def java_version() -> int | None:
    """The major version of the `java` on PATH, None when there is none (or it does not say)."""
    java = shutil.which("java")
    if java is None:
        return None
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def simulator_requirements(env: str, package: str, pin: str) -> list[Requirement]:
    """The Java runtime the simulator jars need (one row for both simulators), and this env's simulator package."""
    version = java_version()
    ok = version is not None and version >= MIN_JAVA
    found = importlib.util.find_spec(package) is not None
    return [
        Requirement(
            "java (scienceworld, textworld_express)", ok, f"java {version}" if version else "not found", JAVA_HINT
        ),
        Requirement(
            f"env={env}",
            found and ok,
            f"{package} package (its simulator jar)" + ("" if found else " missing"),
            f"pip install {package.replace('_', '-')}=={pin}",
        ),
    ]


def require_java(env: str) -> None:
    """One line, before a simulator starts, when the runtime its jar needs is missing or too old."""
    version = java_version()
    if version is None or version < MIN_JAVA:
        found = "no java on PATH" if version is None else f"java {version} on PATH"
        raise UserError(f"env={env} runs its simulator on Java >= {MIN_JAVA}, and there is {found}: {JAVA_HINT}")


def instance(instances: Sequence[int], seed: int | None, fixed: int | None) -> int:
    """The split's instance an episode plays: `fixed` (an index into the split) for every episode, else the episode's
    env seed taken as an index (seed s plays the split's s-th instance, wrapping), the first one when unseeded."""
    if not instances:
        raise UserError("the simulator lists no instance for this split")
    index = fixed if fixed is not None else (seed or 0)
    return int(instances[index % len(instances)])


def check_instance(fixed: int | None) -> None:
    if fixed is not None and fixed < 0:
        raise BadValue("instance", fixed, "null (each episode's seed picks its instance) or an index >= 0")


class Simulator:
    """The library's env object over its JVM, started again after it dies. A call that fails (the JVM crashed or was
    killed) raises `InfraError`, so the runner plays the episode again; the next reset starts a fresh JVM."""

    def __init__(self, name: str, start: Callable[[], Any]) -> None:
        self._name, self._start = name, start
        self.env: Any = start()
        self._dead = False

    @contextlib.contextmanager
    def calls(self) -> Iterator[Any]:
        """The env object, for calls whose failure means the simulator is gone."""
        from py4j.protocol import Py4JError

        if self._dead:
            raise InfraError(f"the {self._name} simulator stopped earlier in this episode")
        try:
            yield self.env
        except Py4JError as error:
            self._dead = True
            raise InfraError(
                f"the {self._name} simulator failed ({first_line(error)[:200]}); a fresh one starts"
            ) from None

    def revive(self) -> bool:
        """After a failure: the dead JVM closed and a new one started (True); False when nothing had failed."""
        if not self._dead:
            return False
        with contextlib.suppress(Exception):  # the old JVM is gone: closing it can only fail
            self.close()
        self.env, self._dead = self._start(), False
        return True

    def close(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            close_once(env)


def close_once(env: Any) -> None:
    """Close the library's env and its JVM; its __del__ would close again, and once is enough."""
    env.close()
    env.close = lambda: None
