"""The rule behind a decision's `bias_applied == "engine"`: the engine's own output must show the bias.

A server that ignores `logit_bias` still answers a numbered-option prompt with an option token most of the time, so the
token proves nothing, and a z' computed here from the bias that was sent only restates the request. What the engine
itself reports after its logits processors is evidence: vLLM's processed log-probs (`--logprobs-mode
processed_logprobs`, or `logprobs_mode=processed` in process) of the options. If the bias was applied, they hold all
of the engine's probability (the common +100 on the options, or the in-process mask, leaves nothing else), and their
log-odds are z + bias, with z read from the same engine without a bias. `engine_z_prime` checks both and returns the
engine's z'; when they do not hold it raises one UserError saying what the engine did wrong, which stops the run.
A backend that returns raw log-probs shows no bias at all: it draws the option on the client and says "client".
"""

from __future__ import annotations

import numpy as np

from jitrl_bench.contract import no_nan
from jitrl_bench.errors import UserError
from jitrl_bench.policies.choice import effective_temperature, log_softmax

MASS_TOL = 1e-4
"""Allowed |log Σ p_engine(option)| in nats. With the bias the options hold all but ~e^-90 of the mass, so only float32
rounding of vLLM's log-softmax is left (measured: < 1e-6); without it the option tokens keep less than 1 - 1e-4 of
the mass unless the model is all but certain of them, and then the log-odds check below still has to pass."""
ODDS_TOL = 2e-3
"""Allowed max |engine - (z + bias)| over the options' renormalised log-probs, in nats: two float32 passes of the same
prompt in one engine (one of them read from its prefix cache) agree to ~1e-5 (measured on SmolLM2, CPU); a
missing bias moves them by the bias differences, a dropped one by up to the whole bias. Options below
`NEGLIGIBLE` in the expected z' are left out: their probability is below 1e-13 either way."""
NEGLIGIBLE = -30.0


def engine_z_prime(
    processed: list[float | None], z: np.ndarray, sent: np.ndarray, bias: np.ndarray, temperature: float, where: str
) -> np.ndarray:
    """z' = the engine's log-probs of the options after `sent` was added (processed, divided by T), renormalised over
    them, with the clamp of `sent` undone to the intended `bias`. UserError naming `where` when they show that the
    engine did not add `sent`: an option missing from its top log-probs, mass off the options, or other log-odds."""
    if any(v is None for v in processed):
        raise UserError(
            f"{where} did not apply logit_bias: with about +100 on every option, some option is missing from its top "
            "log-probs; choice mode needs a server that applies logit_bias (vLLM), else use policy.mode=score"
        )
    values = np.array(processed, dtype=np.float64)
    no_nan(values, "the options' processed log-probs")
    mass = float(np.logaddexp.reduce(values))
    if not abs(mass) <= MASS_TOL:
        raise UserError(
            f"{where} did not apply logit_bias: its processed log-probs leave {1 - np.exp(mass):.3g} of the "
            f"probability off the options it was told to favour by about +100 (tolerance {MASS_TOL} nats); choice "
            "mode needs a server that applies logit_bias, else use policy.mode=score"
        )
    scaled = effective_temperature(temperature) * values
    engine = log_softmax(scaled)
    expected = log_softmax(z + sent)
    kept = expected > NEGLIGIBLE
    worst = float(np.max(np.abs(engine - expected)[kept]))
    if not worst <= ODDS_TOL:
        raise UserError(
            f"{where} applied another bias than the logit_bias it was sent: the options' log-odds differ from "
            f"z + bias by up to {worst:.3g} nats (tolerance {ODDS_TOL}); check the server's logit_bias handling"
        )
    return log_softmax(scaled - sent + bias)
