"""What every `jitrl-bench` command shares: bad input as one red line and exit code 2, Ctrl-C and SIGTERM as a clean
stop (the command's `finally` blocks stop what it started; finished episodes stay saved), and the consoles."""

from __future__ import annotations

import signal
from collections.abc import Callable
from functools import wraps
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer

from jitrl_bench import terminal
from jitrl_bench.errors import UserError
from jitrl_bench.logs import quiet_libraries
from jitrl_bench.terminal import say

console = terminal.console()
err = terminal.console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
Overrides = Annotated[
    list[str] | None, typer.Argument(help="Hydra overrides, e.g. env=jericho env.game=zork1 agent.beta=0.5")
]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so the same clean-up runs."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def user_errors(fn: F) -> F:
    """Bad input → one red line on stderr and exit code 2; Ctrl-C → a resume hint and exit code 130; SIGTERM → the
    same clean stop and exit code 143."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_libraries()
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            say(err, str(e), "error:", "red")  # the message as text: no markup, no control characters
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:
            what = "terminated" if isinstance(e, Terminated) else "interrupted"
            say(err, f"{what}: finished episodes are saved; the same command (same run.dir) resumes")
            raise typer.Exit(143 if isinstance(e, Terminated) else 130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def ints(text: str, option: str, low: int = 1) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected a comma list of integers, e.g. 5,10") from None
    if not values or min(values) < low:
        raise UserError(f"{option} {text!r}: give integers >= {low}")
    return values
