"""The paper's verbalized scoring for chat-only APIs: the model rates each numbered option 0-100 in JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np


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
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    values = np.zeros(len(labels))
    found = False
    for i, label in enumerate(labels):
        value = data.get(label)
        if isinstance(value, int | float) and np.isfinite(value):
            values[i] = min(max(float(value), 0.0), 100.0)
            found = True
    return values if found else None
