"""Several scoring requests in one forward pass: each request's new prompt tokens and all its candidates, side by side
in one sequence, after the cached prompt prefixes they start from.

Request r brings a prompt (whose first `shared_r` tokens an earlier prompt's cache already holds: its "past") and K_r
candidates. The pass reads, for every request, the rest of its prompt (the suffix) and the candidates' tokens. The mask
lets a suffix token see its own past and the suffix up to itself; a candidate token its own past, its whole suffix and
its own candidate up to itself; nothing of another request or another candidate. Positions continue each request's
own prompt, so every number equals that of K separate sequences per request: a batch of requests (episodes in flight)
and a single one read the same way, and one request with a partly cached prompt costs a single pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Request:
    ids: list[int]
    """The prompt's token ids."""
    candidates: list[list[int]]
    """Each candidate reply's ids (ending with end-of-turn)."""

    @property
    def tokens(self) -> int:
        return len(self.ids) + sum(map(len, self.candidates))


@dataclass(frozen=True)
class Layout:
    """The pass's inputs, and where each request's numbers are read back from."""

    inputs: torch.Tensor
    """(1, Q) the queries: per request, its suffix then its candidates' tokens 0..n-2."""
    positions: torch.Tensor
    """(1, Q)."""
    mask: torch.Tensor
    """(1, 1, Q, past + Q) additive."""
    keep: torch.Tensor
    """Query indices whose logits are read: each suffix's last token, every candidate token."""
    suffixes: list[tuple[int, int]]
    """Per request, the query range [start, end) of its suffix."""
    last: list[int]
    """Per request, the row of `keep` whose logits give its first candidate tokens (-1: the prompt was all cached)."""
    rows: list[torch.Tensor]
    """Per request, the rows of `keep` predicting tokens 1..n-1 of its candidates."""
    targets: list[torch.Tensor]
    """Per request, those tokens."""
    segments: list[torch.Tensor]
    """Per request, the candidate each of those rows belongs to."""


def flat_layout(requests: list[Request], shared: list[int], dtype: torch.dtype, device: torch.device) -> Layout:
    """The one-pass layout of `requests`, whose prompts start from cached prefixes of lengths `shared`."""
    tokens: list[int] = []
    positions: list[int] = []
    owner: list[int] = []  # per query: request
    cand: list[int] = []  # per query: candidate (-1 for the suffix)
    offset: list[int] = []  # per query: offset inside its suffix or candidate
    suffixes: list[tuple[int, int]] = []
    last_q: list[int] = []
    body_q: list[list[int]] = []
    targets, segments = [], []

    def query(token: int, position: int, r: int, j: int, i: int) -> None:
        tokens.append(token)
        positions.append(position)
        owner.append(r)
        cand.append(j)
        offset.append(i)

    for r, (request, start) in enumerate(zip(requests, shared, strict=True)):
        begin = len(tokens)
        for i, token in enumerate(request.ids[start:]):
            query(token, start + i, r, -1, i)
        suffixes.append((begin, len(tokens)))
        last_q.append(len(tokens) - 1 if len(tokens) > begin else -1)
        body, target, segment = [], [], []
        for j, candidate in enumerate(request.candidates):
            for i, token in enumerate(candidate[:-1]):
                body.append(len(tokens))
                target.append(candidate[i + 1])
                segment.append(j)
                query(token, len(request.ids) + i, r, j, i)
        body_q.append(body)
        targets.append(torch.tensor(target, dtype=torch.long, device=device))
        segments.append(torch.tensor(segment, dtype=torch.long, device=device))
    keep_q = sorted({q for q in last_q if q >= 0} | {q for body in body_q for q in body})
    row_of = {q: i for i, q in enumerate(keep_q)}
    return Layout(
        inputs=torch.tensor([tokens], dtype=torch.long, device=device),
        positions=torch.tensor([positions], dtype=torch.long, device=device),
        mask=_mask(owner, cand, offset, shared, dtype, device),
        keep=torch.tensor(keep_q, dtype=torch.long, device=device),
        suffixes=suffixes,
        last=[row_of[q] if q >= 0 else -1 for q in last_q],
        rows=[torch.tensor([row_of[q] for q in body], dtype=torch.long, device=device) for body in body_q],
        targets=targets,
        segments=segments,
    )


def _mask(
    owner: list[int], cand: list[int], offset: list[int], shared: list[int], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    o = torch.tensor(owner, device=device)
    c = torch.tensor(cand, device=device)
    f = torch.tensor(offset, device=device)
    past_owner = torch.tensor([r for r, n in enumerate(shared) for _ in range(n)], dtype=torch.long, device=device)
    sees_past = o[:, None] == past_owner[None, :]
    same = o[:, None] == o[None, :]
    suffix_key = (c[None, :] < 0) & ((c[:, None] >= 0) | (f[None, :] <= f[:, None]))  # a candidate sees its suffix
    own_candidate = (c[None, :] >= 0) & (c[:, None] == c[None, :]) & (f[None, :] <= f[:, None])
    allowed = torch.cat([sees_past, same & (suffix_key | own_candidate)], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]
