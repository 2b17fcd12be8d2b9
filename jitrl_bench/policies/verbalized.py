"""The paper's verbalized scoring for chat-only APIs: the model rates each numbered option 0-100 in JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jitrl_bench.contract import Prompt
from jitrl_bench.policies.choice import option_prompt
from jitrl_bench.replies import json_object


def confidence_schema(labels: list[str]) -> dict[str, Any]:
    confidence = {"type": "integer", "minimum": 0, "maximum": 100}
    return {
        "name": "confidences",
        "schema": {
            "type": "object",
            "properties": {label: confidence for label in labels},
            "required": labels,
            "additionalProperties": False,
        },
    }


def parse_confidences(text: str, labels: list[str]) -> np.ndarray | None:
    """{"1": 80, "2": 10, ...} anywhere in the text → confidences clipped to [0, 100]; missing options get 0."""
    data, _ = json_object(text)
    if data is None:
        return None
    values = np.zeros(len(labels))
    found = False
    for i, label in enumerate(labels):
        value = data.get(label)
        if isinstance(value, int | float) and np.isfinite(value):
            values[i] = min(max(float(value), 0.0), 100.0)
            found = True
    return values if found else None


def confidence_request(
    prompt: Prompt, candidates: Sequence[str], labels: list[str], model: str, max_tokens: int, response_format: str
) -> dict[str, Any]:
    """The chat request that asks for one confidence per numbered option, as JSON (`response_format`: "json_schema",
    "json_object" or "none", see the OpenAI policy's config)."""
    asked = option_prompt(prompt, candidates, labels)
    example = ", ".join(f'"{label}": {c}' for label, c in zip(labels[:2], (70, 10), strict=False))
    instruction = (
        "\nFor each option, give your confidence from 0 to 100 that it is the best next action. "
        f"Reply with JSON only, one key per option number, e.g. {{{example}}}."
    )
    messages = [{"role": m.role, "content": m.content} for m in asked.messages]
    messages[-1]["content"] = messages[-1]["content"].rsplit("\nReply with the", 1)[0] + instruction
    payload: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}
    if response_format == "json_object":
        payload["response_format"] = {"type": "json_object"}
    elif response_format == "json_schema":
        payload["response_format"] = {"type": "json_schema", "json_schema": confidence_schema(labels)}
    return payload
