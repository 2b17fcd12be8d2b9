"""Key/value caches, and the chunked candidate layout of the transformers scorer.

Scoring K candidate replies to one prompt costs, at the floor, one forward pass over the prompt and the candidates' own
tokens. `packed_candidates` lays candidates side by side after a prompt's cache in one sequence (the scorer's path for
more candidate tokens than one pass takes; `flat.py` is the general one-pass layout): a block attention mask lets each
candidate token see the whole prompt and the earlier tokens of its own candidate only, and position ids restart after
the prompt for every candidate, so each candidate is read exactly as if it were alone.

`PrefixCache` keeps the last few prompts' caches: consecutive prompts of an episode (and the agents' prompts at the same
step) share long prefixes (system text, goal, history), so only the new suffix is run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass(frozen=True)
class Packed:
    """Candidates side by side after a prompt of `prompt_len` tokens: the inputs of one forward pass."""

    inputs: torch.Tensor
    """(1, T): tokens 0..n-2 of every candidate, concatenated (their outputs predict tokens 1..n-1)."""
    targets: torch.Tensor
    """(T,): tokens 1..n-1 of every candidate."""
    segment: torch.Tensor
    """(T,): the candidate each position belongs to."""
    positions: torch.Tensor
    """(1, T): prompt_len + the offset inside the candidate."""
    mask: torch.Tensor
    """(1, 1, T, prompt_len + T) additive: 0 where a token may attend, the dtype's minimum elsewhere."""


def packed_candidates(
    prompt_len: int, candidates: list[list[int]], dtype: torch.dtype, device: torch.device
) -> Packed | None:
    """The one-pass layout of `candidates` (token id lists) after the prompt; None when all are one token long."""
    bodies = [c[:-1] for c in candidates]
    lengths = [len(b) for b in bodies]
    total = sum(lengths)
    if total == 0:
        return None
    segment = torch.tensor([i for i, n in enumerate(lengths) for _ in range(n)], device=device)
    offset = torch.tensor([j for n in lengths for j in range(n)], device=device)
    own = (segment[:, None] == segment[None, :]) & (offset[None, :] <= offset[:, None])  # same candidate, causal
    mask = torch.zeros((1, 1, total, prompt_len + total), dtype=dtype, device=device)
    mask[0, 0, :, prompt_len:] = torch.where(own, 0.0, torch.finfo(dtype).min)
    return Packed(
        inputs=torch.tensor([[t for b in bodies for t in b]], device=device),
        targets=torch.tensor([t for c in candidates for t in c[1:]], device=device),
        segment=segment,
        positions=(prompt_len + offset).unsqueeze(0),
        mask=mask,
    )


def chunks(candidates: list[list[int]], budget: int) -> list[list[int]]:
    """Candidate indices in groups of at most `budget` tokens each (one pass per group; the mask is quadratic in
    it); a candidate longer than the budget gets a group of its own."""
    groups: list[list[int]] = [[]]
    used = 0
    for i, candidate in enumerate(candidates):
        if groups[-1] and used + len(candidate) > budget:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += len(candidate)
    return groups


def expanded(cache: DynamicCache, k: int, config: Any) -> DynamicCache:
    """A new cache holding the prompt's keys/values for a batch of k; the original stays untouched for reuse."""
    return _rebuild(cache, config, lambda t: t.expand(k, -1, -1, -1), k)


def prefix(cache: DynamicCache, length: int, config: Any) -> DynamicCache:
    """A new cache holding the first `length` positions of `cache` (views: the original stays untouched)."""
    return _rebuild(cache, config, lambda t: t[:, :, :length], 1, crop=length)


def _rebuild(
    cache: DynamicCache,
    config: Any,
    view: Callable[[torch.Tensor], torch.Tensor],
    batch: int,
    crop: int | None = None,
) -> DynamicCache:
    layers: list[Any] = list(cache.layers)
    if not all(isinstance(layer, DynamicLayer) for layer in layers):  # e.g. linear-attention layers: copy the lot
        import copy

        copied = copy.deepcopy(cache)
        if crop is not None:
            copied.crop(crop)
        if batch > 1:
            copied.batch_repeat_interleave(batch)
        return copied
    # Views cost no memory; the first update concatenates, which copies them.
    data = [(None, None) if layer.keys is None else (view(layer.keys), view(layer.values)) for layer in layers]
    return DynamicCache(data, config=config)


def dynamic(cache: DynamicCache) -> bool:
    """A cache of plain key/value layers (what `joined` and `appended` slice and join)."""
    return all(isinstance(layer, DynamicLayer) and layer.keys is not None for layer in cache.layers)


def _kv(cache: DynamicCache, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    layer = cache.layers[i]
    if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
        raise TypeError("not a plain key/value cache layer (check `dynamic` first)")
    return layer.keys, layer.values


def joined(pasts: list[tuple[DynamicCache, int]], config: Any) -> DynamicCache:
    """One cache holding the first n positions of each given cache, one after the other (a flat batch's past)."""
    if not pasts:
        return DynamicCache(config=config)
    data = []
    for i in range(len(pasts[0][0].layers)):
        parts = [_kv(cache, i) for cache, _ in pasts]
        keys = torch.cat([k[:, :, :n] for (k, _), (_, n) in zip(parts, pasts, strict=True)], dim=2)
        values = torch.cat([v[:, :, :n] for (_, v), (_, n) in zip(parts, pasts, strict=True)], dim=2)
        data.append((keys, values))
    return DynamicCache(data, config=config)


def appended(head: DynamicCache | None, new: DynamicCache, start: int, end: int, config: Any) -> DynamicCache:
    """A prompt's own cache: its cached head (or none) then positions [start, end) of a flat pass's cache."""
    data = []
    for i in range(len(new.layers)):
        keys, values = (t[:, :, start:end] for t in _kv(new, i))
        if head is not None:
            head_keys, head_values = _kv(head, i)
            keys, values = torch.cat([head_keys, keys], dim=2), torch.cat([head_values, values], dim=2)
        data.append((keys.clone(), values.clone()))
    return DynamicCache(data, config=config)


@dataclass
class Prefill:
    """A prompt's forward pass: log p(next token | prompt) and the prompt's cache."""

    ids: tuple[int, ...]
    last_logprobs: torch.Tensor
    """(vocab,) float32."""
    cache: DynamicCache
    reused: int = 0
    """Prompt tokens whose keys and values came from an earlier prompt's cache."""


class PrefixCache:
    """The last `size` prompts' caches, looked up by the longest common prefix of token ids."""

    def __init__(self, size: int, min_shared: int = 16) -> None:
        self.size = size
        self.min_shared = min_shared
        self._entries: list[Prefill] = []

    def lookup(self, ids: tuple[int, ...]) -> tuple[Prefill | None, int]:
        """The entry sharing the longest prefix with `ids`, and that length (0 and None: nothing worth reusing).
        An exact match is moved to the front and returned with its full length."""
        best, shared = None, 0
        for entry in self._entries:
            n = _common_prefix(entry.ids, ids)
            if n > shared:
                best, shared = entry, n
        if best is not None and shared == len(ids) == len(best.ids):
            self._entries.remove(best)
            self._entries.insert(0, best)
            return best, shared
        return (best, shared) if shared >= self.min_shared else (None, 0)

    def add(self, entry: Prefill) -> None:
        self._entries.insert(0, entry)
        del self._entries[self.size :]

    def clear(self) -> None:
        self._entries.clear()


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
