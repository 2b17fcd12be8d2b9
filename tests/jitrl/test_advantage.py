"""Hand-computed memories for both estimators."""

import random

import numpy as np
import pytest

from jitrl_bench.jitrl.advantage import adaptive_exploration, clean_advantage, paper_advantage, paper_weight
from jitrl_bench.jitrl.update import jitrl_logits, select
from jitrl_bench.memory.store import Neighbour


def nb(action: str, ret: float, sim: float = 1.0, i: int = 0) -> Neighbour:
    return Neighbour(id=i, similarity=sim, action_key=action, ret=ret, step=0)


def test_clean_similarity_weighted_means() -> None:
    neighbours = [nb("north", 4.0, 0.9), nb("north", 1.0, 0.6), nb("south", -2.0, 0.5)]
    adv = clean_advantage(["north", "south", "east"], neighbours)
    v = (0.9 * 4 + 0.6 * 1 + 0.5 * -2) / 2.0
    q_north = (0.9 * 4 + 0.6 * 1) / 1.5
    assert adv.v == pytest.approx(v)
    assert adv.q["north"] == pytest.approx(q_north)
    np.testing.assert_allclose(adv.values, [q_north - v, -2.0 - v, 0.0])
    assert adv.counts == {"north": 2, "south": 1}


def test_clean_equal_similarities_reduce_to_plain_means() -> None:
    adv = clean_advantage(["a", "b"], [nb("a", 3.0), nb("a", 1.0), nb("b", 5.0)])
    np.testing.assert_allclose(adv.values, [2.0 - 3.0, 5.0 - 3.0])


def test_empty_retrieval_leaves_the_frozen_policy_in_charge() -> None:
    adv = clean_advantage(["a", "b", "c"], [])
    z = np.array([-1.0, -0.5, -3.0])
    assert np.array_equal(adv.values, np.zeros(3))
    assert np.array_equal(jitrl_logits(z, adv.values, 0.1), z)
    assert select(jitrl_logits(z, adv.values, 0.1), 0.0, np.random.default_rng(0)) == 1


def test_clean_all_candidates_negative_favours_the_unseen_action() -> None:
    # The best remembered action ("x") is not offered now; both offered actions that memory knows did worse than V̂.
    neighbours = [nb("x", 6.0), nb("a", 0.0), nb("b", 0.0)]
    adv = clean_advantage(["a", "b", "c"], neighbours)
    np.testing.assert_allclose(adv.values, [-2.0, -2.0, 0.0])
    z = np.log(np.array([0.45, 0.45, 0.10]))
    assert select(jitrl_logits(z, adv.values, 0.5), 0.0, np.random.default_rng(0)) == 2


def test_clean_count_bonus_prefers_less_tried_actions() -> None:
    adv = clean_advantage(["a", "b"], [nb("a", 1.0), nb("a", 1.0), nb("a", 1.0)], bonus=1.0)
    np.testing.assert_allclose(adv.values, [0.0 + 1 / 2, 1.0])


def test_clean_ties_give_equal_advantages_and_first_wins() -> None:
    adv = clean_advantage(["a", "b"], [nb("a", 2.0), nb("b", 2.0)])
    assert adv.values[0] == adv.values[1] == 0.0
    assert select(jitrl_logits(np.zeros(2), adv.values, 1.0), 0.0, np.random.default_rng(0)) == 0


def test_paper_mean_q_v_and_max_normalisation() -> None:
    neighbours = [nb("a", 4.0), nb("a", 2.0), nb("b", 0.0)]
    adv = paper_advantage(["a", "b"], neighbours, exploration=0.0, rng=random.Random(0))
    # Q(a) = 3, Q(b) = 0, V = 2 (mean over samples); Â = (1, -2) / max positive 1
    assert adv.v == pytest.approx(2.0)
    np.testing.assert_allclose(adv.values, [1.0, -2.0])


def test_paper_unseen_without_bonus_gets_q_zero_and_v_over_actions() -> None:
    adv = paper_advantage(["a", "c"], [nb("a", 4.0), nb("a", 2.0)], exploration=0.0, rng=random.Random(0))
    # Q(a) = 3, Q(c) = 0 (unseen, no bonus), V = mean over actions = 1.5; Â = (1.5, -1.5) / 1.5
    assert adv.q == {"a": 3.0, "c": 0.0}
    assert adv.v == pytest.approx(1.5)
    np.testing.assert_allclose(adv.values, [1.0, -1.0])


def test_paper_unseen_with_bonus_gets_v_plus_alpha_over_n() -> None:
    adv = paper_advantage(["a", "c"], [nb("a", 4.0), nb("a", 2.0)], exploration=1.0, rng=random.Random(0), alpha=1.0)
    # Q(c) = V + α/n = 3 + 1/2; V over actions = (3 + 3.5)/2 = 3.25; Â = (-0.25, 0.25) / 0.25
    assert adv.q["c"] == pytest.approx(3.5)
    np.testing.assert_allclose(adv.values, [-1.0, 1.0])


def test_paper_adds_profitable_memory_actions_as_candidates() -> None:
    neighbours = [nb("a", 1.0), nb("x", 5.0), nb("y", -1.0)]
    adv = paper_advantage(["a"], neighbours, exploration=0.0, rng=random.Random(0))
    assert adv.keys == ["a", "x"]  # y has mean return ≤ 0: not added
    # V = 5/3; Â: a = -2/3, x = 10/3, y = -8/3; normalised by 10/3
    np.testing.assert_allclose(adv.values, [-0.2, 1.0])


def test_paper_all_zero_advantages_stay_zero() -> None:
    adv = paper_advantage(["a"], [nb("a", -2.0), nb("a", -2.0)], exploration=0.0, rng=random.Random(0))
    assert adv.values.tolist() == [0.0]


def test_paper_no_neighbours_changes_nothing() -> None:
    adv = paper_advantage(["a", "b"], [], exploration=0.5, rng=random.Random(0))
    assert adv.keys == ["a", "b"] and adv.values.tolist() == [0.0, 0.0]


def test_adaptive_exploration_hand_computed() -> None:
    # action a: returns (2, 4, 6, 8): m = 5, s = sqrt(5) = 2.23607, m / (1 + s/m) = 3.45492,
    # conf = 3.45492^0.65 = 2.23864 (n = 4: factor 1), λ = 1 / (1 + 2.23864) = 0.30877
    neighbours = [nb("a", r) for r in (2.0, 4.0, 6.0, 8.0)] + [nb("b", 1.0)]
    assert adaptive_exploration(neighbours) == pytest.approx(0.30877, abs=1e-5)
    # the same returns twice: n = 8 doubles conf (factor n/4 = 2): λ = 1 / (1 + 4.47728) = 0.18257
    assert adaptive_exploration(neighbours[:4] * 2) == pytest.approx(0.18257, abs=1e-5)
    assert adaptive_exploration([nb("a", 1.0), nb("b", 1.0)]) == 0.8  # no action with two samples
    assert adaptive_exploration([nb("a", -1.0), nb("a", -2.0)]) == 0.8  # conf 0 → 1/(1+0) clipped to 0.8
    many = [nb("a", 10.0)] * 40
    assert adaptive_exploration(many) == 0.05


def test_paper_weight_schedule() -> None:
    assert paper_weight(0) == 1.0
    assert paper_weight(25) == pytest.approx(1.25)
    assert paper_weight(50) == paper_weight(80) == 1.5
