"""The one prompt every agent sees: same text, same candidates, so comparisons differ only in the algorithm."""

from __future__ import annotations

from typing import Any

from jitrl_bench.policies.base import Prompt

SYSTEM = (
    "You are playing a text adventure game. Read the observation and choose the single best next command "
    "from the admissible commands. Reply with the command only."
)


def build_prompt(
    observation: str, info: dict[str, Any], history: list[tuple[str, str]], max_history: int = 3
) -> Prompt:
    """An env may set `info["instruction"]` (its own system text, e.g. a web task's rules) and `info["goal"]`."""
    state = info.get("state", {})
    parts = [f"Goal: {info['goal']}"] if info.get("goal") else []
    if history:
        recent = "; ".join(action for action, _ in history[-max_history:])
        parts.append(f"Recent commands: {recent}")
    for name in ("location", "inventory"):
        if state.get(name):
            parts.append(f"{name.capitalize()}: {_clip(state[name], 400)}")
    parts.append(f"Observation: {_clip(observation, 600)}")
    parts.append("Admissible commands: " + ", ".join(info["candidates"]))
    parts.append("Next command:")
    return Prompt.chat(info.get("instruction") or SYSTEM, "\n".join(parts))


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
