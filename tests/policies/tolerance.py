"""How far two evaluations of the same candidate scores may differ when only float rounding separates them.

A score is z = Σ_j log p(t_j | prompt, t_<j) over the candidate's n tokens (end-of-turn included). Two correct
scorers (one pass under a block mask, K separate sequences, a cached prefill, chunks, AVX2 or AVX-512 kernels) do the
same arithmetic in another order, so their numbers differ by rounding alone, which grows with the dtype's epsilon:
- each token's logits come out of the forward pass (SmolLM2: 30 layers of dot products 576 to 1,536 terms long, and
  attention over a few hundred positions) computed in the model's dtype. Their rounding is about eps × the logits'
  scale × its growth through the layers, whatever the token's log-prob: an absolute budget per token, `PER_TOKEN`
  epsilons, added up over the n tokens (which share the prompt's cache, so their errors need not cancel);
- the float32 log-softmax sums the 49,152 exponentials of the vocabulary, which rounds each log-prob relative to its
  size, by at most log2(49,152) ≈ 16 epsilons of float32 (pairwise summation): `RELATIVE` × |z|.
So tolerance = eps(dtype) × PER_TOKEN × n + eps(float32) × RELATIVE × |z|.

PER_TOKEN is measured, not derived (no useful a-priori bound survives 30 layers). SmolLM2-135M in float32, 43 candidates
of 2 to 12 tokens: the float32 scorers stay within 150 epsilons per token of a float64 evaluation of the same weights
on AVX-512 (6.7e-5 at most), and issue 26's AVX2 case (-12.763801 one pass, -12.763955 the reference, 8 tokens) is
162 epsilons per token apart. The budget, 1,024 (1.2e-4 nats per token in float32), leaves 6× room for other CPUs.

A broken computation moves scores by far more (measured on the same 43 candidates, float32): a mask that lets each
candidate see the candidates before it moves them by 0.011 ("go north" after "go", 28× its tolerance) to 16.6 nats;
candidate positions shifted by one move them by 0.0036 to 1.44 nats (7× to 2,000× their tolerance). Every test that
uses this tolerance fails on the worst-hit candidate by over 100×.

Comparisons where exactness is the point (the same pass twice) use `np.testing.assert_array_equal`, not this.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from jitrl_bench.policies.hf import HFPolicy

PER_TOKEN = 1024
"""Epsilons of the model's dtype one token's log-prob may drift by (measured worst: 162, float32)."""
RELATIVE = 16
"""Epsilons of float32, relative to |z|: the log-softmax's sum over the vocabulary (log2 of 49,152 terms)."""


def score_tolerance(policy: HFPolicy, candidates: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """Per candidate: how far a correct rescoring of `scores` may land, in the policy's model dtype."""
    tokens = np.array([len(policy.candidate_ids(c)) for c in candidates], dtype=np.float64)
    eps = torch.finfo(policy.model.dtype).eps
    return eps * PER_TOKEN * tokens + torch.finfo(torch.float32).eps * RELATIVE * np.abs(scores)


def assert_same_scores(got: np.ndarray, want: np.ndarray, policy: HFPolicy, candidates: Sequence[str]) -> None:
    """`got` equals `want` (two scorers of the same candidates) up to rounding: `score_tolerance`."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape == (len(candidates),), (got.shape, want.shape, len(candidates))
    tolerance = score_tolerance(policy, candidates, want)
    error = np.abs(got - want)
    worst = int(np.argmax(error / tolerance)) if len(error) else 0
    assert np.all(error <= tolerance), (
        f"{candidates[worst]!r}: {got[worst]:.6f} vs {want[worst]:.6f}, off by {error[worst]:.2e} > tolerance "
        f"{tolerance[worst]:.2e} ({np.sum(error > tolerance)} of {len(candidates)} candidates out)"
    )
