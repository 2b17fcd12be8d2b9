"""The `prices` group (configs/prices/): USD per million tokens per model, USD per GPU-hour, and costs copied from the
literature. Plain checked data, so a run's spec holds it; `results/cost.py` prices a run's episodes with it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from jitrl_bench.checks import BadValue, Checked


@dataclass
class ModelPrice(Checked):
    input: float = 0.0
    """USD per million prompt tokens."""
    output: float = 0.0
    """USD per million completion tokens."""

    def check(self) -> None:
        for key, value in (("input", self.input), ("output", self.output)):
            if not math.isfinite(value) or value < 0:
                raise BadValue(key, value, "use a price in USD per million tokens, 0 or more")


@dataclass
class LiteratureCost(Checked):
    """A cost someone else reported (copied, never measured here)."""

    method: str = ""
    usd: float = 0.0
    gpu_hours: float = 0.0
    source: str = ""

    def check(self) -> None:
        if not self.method or not self.source:
            raise BadValue("method", self.method, "every copied cost needs a method and its source")
        if not math.isfinite(self.usd) or self.usd < 0:
            raise BadValue("usd", self.usd, "use a dollar amount, 0 or more")


@dataclass
class PricesConfig(Checked):
    """configs/prices/*.yaml."""

    models: dict[str, ModelPrice] = field(default_factory=dict)
    gpu_hour: float = 0.0
    """USD per GPU-hour for a model this run served itself on a GPU."""
    literature: list[LiteratureCost] = field(default_factory=list)

    def check(self) -> None:
        if not math.isfinite(self.gpu_hour) or self.gpu_hour < 0:
            raise BadValue("gpu_hour", self.gpu_hour, "use USD per GPU-hour, 0 or more")
        for model, price in self.models.items():  # check_tree walks dataclasses and lists, not dicts
            try:
                price.check()
            except BadValue as bad:
                raise BadValue(f"models.{model}.{bad.key}", bad.value, bad.allowed) from None

    def price(self, model: str) -> ModelPrice | None:
        """The model's price: its exact name, else without a provider prefix ("openai/gpt-5-mini"), case ignored."""
        table = {name.lower(): price for name, price in self.models.items()}
        return table.get(model.lower()) or table.get(model.rsplit("/", 1)[-1].lower())
