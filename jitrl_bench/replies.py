"""An LLM's reply read as data: the JSON object in it, never code (nothing in a reply is evaluated)."""

from __future__ import annotations

import json
import re
from typing import Any

OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def json_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """The outermost {...} of the reply as a dict, or (None, what was wrong): a model may wrap its JSON in prose or a
    code fence."""
    found = OBJECT.search(text)
    if found is None:
        return None, "no JSON object in the reply"
    try:
        data = json.loads(found.group(0))
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg})"
    if not isinstance(data, dict):
        return None, "the JSON is not an object"
    return data, ""
