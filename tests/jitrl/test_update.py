"""The closed form z' = z + Â/β is the maximiser of E_π[Â] − β·KL(π ‖ π_θ); limits in β; selection rules."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from jitrl_bench.jitrl.update import jitrl_logits, paper_scores, select, softmax


def objective(pi: np.ndarray, z: np.ndarray, adv: np.ndarray, beta: float) -> float:
    log_pi_theta = z - np.log(np.exp(z - z.max()).sum()) - z.max()
    return float(pi @ adv - beta * np.sum(pi * (np.log(pi) - log_pi_theta)))


def numerical_optimum(z: np.ndarray, adv: np.ndarray, beta: float) -> np.ndarray:
    """Maximise the KL-regularised objective over the simplex (softmax parametrisation, analytic gradient)."""
    log_pi_theta = z - z.max() - np.log(np.exp(z - z.max()).sum())

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        pi = softmax(theta)
        g_pi = adv - beta * (np.log(pi) + 1 - log_pi_theta)  # d objective / d pi
        grad_theta = pi * (g_pi - pi @ g_pi)  # chain rule through softmax
        return -objective(pi, z, adv, beta), -grad_theta

    result = minimize(loss, np.zeros_like(z), jac=True, method="BFGS", options={"gtol": 1e-13, "maxiter": 10_000})
    return softmax(result.x)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 8).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(-5, 5), min_size=n, max_size=n),
            st.lists(st.floats(-3, 3), min_size=n, max_size=n),
            st.floats(0.2, 5.0),
        )
    )
)
def test_closed_form_matches_numerical_optimum(case: tuple[list[float], list[float], float]) -> None:
    z, adv, beta = np.array(case[0]), np.array(case[1]), case[2]
    closed = softmax(jitrl_logits(z, adv, beta))
    numeric = numerical_optimum(z, adv, beta)
    np.testing.assert_allclose(closed, numeric, atol=1e-6)
    assert objective(closed, z, adv, beta) >= objective(numeric, z, adv, beta) - 1e-10


def test_beta_infinity_is_the_frozen_policy_exactly() -> None:
    z = np.array([-1.3, -0.2, -4.0])
    adv = np.array([5.0, -2.0, 1.0])
    out = jitrl_logits(z, adv, math.inf)
    assert np.array_equal(out, z)
    np.testing.assert_allclose(softmax(jitrl_logits(z, adv, 1e9)), softmax(z), atol=1e-8)


def test_beta_to_zero_puts_all_mass_on_the_best_advantage() -> None:
    z = np.array([0.0, -10.0, -1.0])  # the policy prefers action 0 ...
    adv = np.array([0.0, 0.5, 0.2])  # ... memory says action 1
    probs = softmax(jitrl_logits(z, adv, 1e-4))
    assert probs[1] > 1 - 1e-9


def test_nonpositive_beta_is_rejected() -> None:
    with pytest.raises(ValueError, match="beta"):
        jitrl_logits(np.zeros(2), np.zeros(2), 0.0)


def test_argmax_breaks_ties_to_the_first_candidate() -> None:
    rng = np.random.default_rng(0)
    assert select(np.array([1.0, 3.0, 3.0]), 0.0, rng) == 1
    assert softmax(np.array([1.0, 3.0, 3.0]), 0.0).tolist() == [0.0, 1.0, 0.0]


def test_sampling_is_seeded_and_follows_the_distribution() -> None:
    logits = np.log(np.array([0.2, 0.5, 0.3]))
    draws = [select(logits, 1.0, np.random.default_rng(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same draw
    rng = np.random.default_rng(1)
    counts = np.bincount([select(logits, 1.0, rng) for _ in range(20_000)], minlength=3) / 20_000
    np.testing.assert_allclose(counts, [0.2, 0.5, 0.3], atol=0.015)


def test_temperature_sharpens() -> None:
    logits = np.array([0.0, 1.0])
    assert softmax(logits, 0.5)[1] > softmax(logits, 1.0)[1] > softmax(logits, 2.0)[1]


def test_paper_update_adds_to_probabilities_not_logits() -> None:
    p = np.array([0.7, 0.3, 0.0])
    scores = paper_scores(p, np.array([-1.0, 1.0, 0.5]), w=1.2)
    np.testing.assert_allclose(scores, [0.7 - 1.2, 0.3 + 1.2, 0.6])
