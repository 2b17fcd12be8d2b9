"""How sure a number is: a 95% interval beside every mean, and a paired test beside every difference between agents.

Intervals are percentile bootstraps (scipy.stats.bootstrap) over the unit the table names: the episodes of one run.
Episodes of a learning agent are not independent draws (memory carries from one to the next), so an interval over them
describes this run's episodes, not the spread of the agent; repeated runs are the honest unit where they exist.

A difference between two agents is paired: the same task, seed and episode index, so what the task and the seed
contribute cancels. Its p-value is a sign-flip permutation test of the mean difference, two-sided (exact up to 14
pairs, 16,384 random flips beyond), and its interval is the test inverted (`SignFlip`), so the two never disagree; the
verdict says "better" or "worse" only when p < ALPHA, and "no evidence" otherwise: a gain of one or two episodes out of
twenty is what noise gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
LEVEL = 0.95
RESAMPLES = 2**14
"""Bootstrap resamples, and random sign vectors of a sign-flip test of more than EXACT_UP_TO pairs."""
EXACT_UP_TO = 14
"""Up to 14 pairs the sign-flip test enumerates all 2^n sign vectors (16,384 at most): exact."""
SEED = 0
CHUNK = 1024
"""Sign vectors drawn at a time: 1,024 × n floats, whatever the number of pairs."""
"""Resampling is seeded: the same scores give the same interval and p-value, in every table and on every machine."""
VERDICTS = ("better", "worse", "no evidence")


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% bootstrap interval over n values (nan bounds when n < 2: one value has no spread)."""

    n: int
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Paired:
    """The mean paired difference agent − reference, its interval, the sign-flip test's p-value and the verdict."""

    n: int
    difference: float
    low: float
    high: float
    p_value: float
    verdict: str


def mean_interval(values: np.ndarray) -> Interval:
    """The mean of `values` with its percentile bootstrap interval."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan)
    mean = float(values.mean())
    if n < 2:
        return Interval(n, mean, math.nan, math.nan)
    if float(np.ptp(values)) == 0.0:  # every resample has this mean: the interval is the point
        return Interval(n, mean, mean, mean)
    result = stats.bootstrap(
        (values,), np.mean, n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile", rng=SEED
    )
    return Interval(n, mean, float(result.confidence_interval.low), float(result.confidence_interval.high))


def paired_difference(agent: np.ndarray, reference: np.ndarray) -> Paired:
    """agent[i] − reference[i] over pairs that share task, seed and episode: mean, interval, p-value, verdict."""
    agent, reference = np.asarray(agent, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if agent.shape != reference.shape:
        raise ValueError(f"paired scores need one reference per score: {agent.shape} against {reference.shape}")
    differences = agent - reference
    n = len(differences)
    if n < 2:
        mean = float(differences.mean()) if n else math.nan
        return Paired(n, mean, math.nan, math.nan, math.nan, "no evidence")
    if not differences.any():  # identical play: no flip changes anything, and nothing was gained or lost
        return Paired(n, 0.0, 0.0, 0.0, 1.0, "no evidence")
    test = SignFlip(differences)
    mean, p_value = float(differences.mean()), test.p_value(0.0)
    low, high = test.interval()
    return Paired(n, mean, low, high, p_value, verdict(mean, p_value))


def verdict(difference: float, p_value: float) -> str:
    """ "better" / "worse" when the test rejects "no difference" at ALPHA, else "no evidence"."""
    if not p_value < ALPHA:  # nan (too few pairs) included
        return "no evidence"
    return "better" if difference > 0 else "worse"


class SignFlip:
    """The paired sign-flip permutation test of "the differences are centred on δ", for any δ, and its inversion.

    Under "no difference" each pair's two scores are exchangeable, so each difference is as likely with either sign.
    The test statistic is |Σ (d_i − δ)|, compared with its value under every sign vector s (all 2^n of them up to
    EXACT_UP_TO pairs, else RESAMPLES random ones, seeded, counting the observed one as scipy does). With the sign
    matrix S drawn once, Σ s_i (d_i − δ) = S·d − δ S·1, so p(δ) costs one pass over the resamples: that makes the
    interval cheap, the set of δ the test does not reject at ALPHA (found by bisection). The interval and the test
    therefore agree: it holds 0 exactly when p(0) ≥ ALPHA. With fewer than 6 pairs no sign pattern is rare enough
    (2/2^5 > 0.05) and the interval is unbounded. scipy.stats.permutation_test gives the same p(0) (tests check it);
    scipy has no inversion, so it is done here.
    """

    def __init__(self, differences: np.ndarray) -> None:
        self.d = np.asarray(differences, dtype=np.float64)
        n = len(self.d)
        exact = n <= EXACT_UP_TO
        self.extra = 0 if exact else 1  # Monte Carlo: the observed signs count once, so p is never 0
        rng = np.random.default_rng(SEED)
        flipped_d, flipped_one = [], []
        rows = 2**n if exact else RESAMPLES
        for start in range(0, rows, CHUNK):  # in chunks: a pooled table may pair thousands of episodes
            if exact:
                signs = 1.0 - 2.0 * ((np.arange(start, min(start + CHUNK, rows))[:, None] >> np.arange(n)) & 1)
            else:
                signs = rng.choice(np.array([-1.0, 1.0]), size=(min(CHUNK, rows - start), n))
            flipped_d.append(signs @ self.d)
            flipped_one.append(signs.sum(axis=1))
        self.flipped_d, self.flipped_one = np.concatenate(flipped_d), np.concatenate(flipped_one)

    def p_value(self, delta: float) -> float:
        observed = abs(float(np.sum(self.d - delta)))
        flipped = np.abs(self.flipped_d - delta * self.flipped_one)
        tie = 1e-9 * max(observed, 1.0)  # sums taken in another order must still count as ties
        hits = int(np.count_nonzero(flipped >= observed - tie)) + self.extra
        return min(hits / (len(flipped) + self.extra), 1.0)

    def interval(self) -> tuple[float, float]:
        mean = float(self.d.mean())
        reach = 10 * (float(np.ptp(self.d)) + abs(mean) + 1)
        return self._edge(mean, mean - reach), self._edge(mean, mean + reach)

    def _edge(self, inside: float, outside: float) -> float:
        """Bisect between a δ the test keeps (p ≥ ALPHA) and one it rejects; ±inf when it rejects none that far."""
        if self.p_value(outside) >= ALPHA:
            return math.copysign(math.inf, outside - inside)
        for _ in range(60):
            middle = (inside + outside) / 2
            if self.p_value(middle) >= ALPHA:
                inside = middle
            else:
                outside = middle
        tidy = round(inside, 6) + 0.0  # the bisection's last bits (and -0.0) say nothing, unless they leave the set
        return tidy if self.p_value(tidy) >= ALPHA else inside
