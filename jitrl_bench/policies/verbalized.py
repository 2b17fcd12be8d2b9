"""The paper's verbalized scoring for chat-only APIs: the model rates each numbered option 0-100 in JSON."""

from __future__ import annotations

from typing import Any

import numpy as np

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
