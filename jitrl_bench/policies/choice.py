"""The bias seam: one decoding step over numbered options, with JitRL's bias Â/β added to the option logits by the LLM
server itself.

`Policy.score` gives z (one log-prob per candidate reply) and the agent adds Â/β on the client. A `BiasedChooser`
backend instead lists the candidates as numbered options, lets the model emit one option token, and adds the bias to
those tokens' logits inside the server, so the token it samples is drawn from softmax((z + bias) / T). It returns both
distributions, so traces can show z and z' exactly as the client-side path does:

    z       = log-probs of the option tokens without bias, renormalised over the options
    z_prime = log_softmax(z + bias)                   (the same renormalisation, with the bias)
    index   = the option the server sampled under the biased logits (argmax when temperature <= 0)

Only single-token option labels work in one step, and `top_logprobs` stops at 20, so K <= 20; larger candidate sets
need `mode=score`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jitrl_bench.contract import MAX_OPTIONS, Message, Prompt, no_nan
from jitrl_bench.errors import UserError

DIGITS = [str(i) for i in range(1, 10)]
LETTERS = [chr(ord("A") + i) for i in range(MAX_OPTIONS)]
LOGIT_BIAS_LIMIT = 100.0  # the OpenAI API (and vLLM) clamp logit_bias values to ±100
GREEDY_EPS = 1e-5  # vLLM treats temperatures below this as greedy


# ---- options ----------------------------------------------------------------------------------------------------


def option_labels(k: int) -> list[str]:
    """Digits 1-9 for up to nine options, letters A-T for 10 to 20: one label kind per list, which small models follow
    more reliably than "1..9, A, B"."""
    check_option_count(k)
    return DIGITS[:k] if k <= len(DIGITS) else LETTERS[:k]


def check_option_count(k: int) -> None:
    if k < 1:
        raise UserError("choice mode needs at least one candidate")
    if k > MAX_OPTIONS:
        raise UserError(
            f"choice mode handles at most {MAX_OPTIONS} candidates (one option token each, top_logprobs <= 20), "
            f"got {k}; use policy.mode=score"
        )


def option_prompt(prompt: Prompt, candidates: Sequence[str], labels: Sequence[str]) -> Prompt:
    """The prompt with the candidates appended to its last user message as a labelled list."""
    kind = "number" if labels[0].isdigit() else "letter"
    listing = "\n".join(f"{label}. {candidate}" for label, candidate in zip(labels, candidates, strict=True))
    suffix = f"\n\nOptions:\n{listing}\nReply with the {kind} of one option only."
    messages = list(prompt.messages)
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        messages.append(Message("user", suffix.lstrip()))
    else:
        messages[last_user] = Message("user", messages[last_user].content + suffix)
    return Prompt(tuple(messages))


def check_bias(bias: np.ndarray, k: int) -> np.ndarray:
    values = np.asarray(bias, dtype=np.float64)
    if values.shape != (k,):
        raise ValueError(f"bias must have shape ({k},), got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("bias must be finite")
    return values


# ---- the arithmetic every backend shares ----------------------------------------------------------------------


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - np.max(x)
    out: np.ndarray = shifted - np.log(np.sum(np.exp(shifted)))
    return out


def server_logit_bias(bias: np.ndarray) -> np.ndarray:
    """The bias to send as `logit_bias`: shifted so the largest is +100, then clamped to ±100.

    A common shift leaves the distribution over the options unchanged, and +100 on the options makes every other token
    negligible (the closest thing to a mask the OpenAI API offers). Only options whose bias is more than 200 below the
    best option's are clamped; their biased probability is below e^-200 either way.
    """
    shifted: np.ndarray = np.clip(bias - np.max(bias) + LOGIT_BIAS_LIMIT, -LOGIT_BIAS_LIMIT, LOGIT_BIAS_LIMIT)
    return shifted


def effective_temperature(temperature: float) -> float:
    """The temperature vLLM divides by before it computes processed logprobs: 1 for greedy requests (vLLM leaves
    their logits unscaled), and at least 0.01 (vLLM raises smaller positive temperatures to 0.01)."""
    return 1.0 if temperature < GREEDY_EPS else max(temperature, 0.01)


def sample_index(z_prime: np.ndarray, temperature: float, seed: int) -> int:
    """Client-side draw from softmax(z'/T) (argmax when greedy): where the engine's output cannot show the bias."""
    no_nan(z_prime, "the options' log-probs")
    if temperature < GREEDY_EPS:
        return int(np.argmax(z_prime))
    p = np.exp(log_softmax(z_prime / temperature))
    return int(np.random.default_rng(seed).choice(len(p), p=p / p.sum()))
