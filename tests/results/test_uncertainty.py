"""Intervals, paired tests and verdicts: hand-worked cases, scipy's permutation test as the reference for the p-value,
the interval's agreement with the test it inverts, and the CLI's tables and files for identical and unequal agents."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.results.comparison import POOLED, compare
from jitrl_bench.results.uncertainty import ALPHA, SignFlip, mean_interval, paired_difference

FAST = ["policy=uniform", "run.progress=false", "run.episodes=6", "run.max_steps=8"]


def scipy_p(differences: np.ndarray, resamples: int = 2**14) -> float:
    def mean(x: np.ndarray, axis: int) -> np.ndarray:
        return np.asarray(np.mean(x, axis=axis))

    test = stats.permutation_test((differences,), mean, permutation_type="samples", vectorized=True, rng=0,
                                  n_resamples=resamples)  # fmt: skip
    return float(test.pvalue)


def enumerated_p(differences: list[float]) -> float:
    """The sign-flip test written out: the share of the 2^n sign vectors whose |sum| reaches the observed one."""
    observed = abs(sum(differences))
    flips = list(itertools.product((-1, 1), repeat=len(differences)))
    return sum(
        abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed - 1e-12 for signs in flips
    ) / len(flips)


@pytest.mark.parametrize(
    ("differences", "p"),
    [
        ([1, 1, 1, 1, 1, 1], 2 / 64),  # only all-plus and all-minus reach |sum| = 6
        ([0, 1, 0, 1, 1, 0], 2 / 8),  # zeros flip to themselves: three coins, |sum| = 3 twice in 8
        ([1, -1, 1, -1], 1.0),  # sum 0: every flip reaches it
        ([1, 1, 1, 1, 1, 1, 1, -1], 18 / 256),  # |sum| ≥ 6 of eight ±1: 7 or 8 of one sign, (8 + 1) · 2 ways
    ],
)
def test_sign_flip_p_values_worked_by_hand(differences: list[float], p: float) -> None:
    assert enumerated_p(differences) == pytest.approx(p)
    assert SignFlip(np.array(differences, dtype=float)).p_value(0.0) == pytest.approx(p, abs=1e-12)


def test_p_value_equals_scipys_permutation_test() -> None:
    """On recorded-like scores (0/1 successes, TextWorld points): exact up to 14 pairs, so equal to scipy's exact
    test; beyond, both are Monte Carlo and agree within their resampling error."""
    rng = np.random.default_rng(7)
    for n in (6, 9, 14):
        for _ in range(5):
            d = (rng.integers(0, 2, n) - rng.integers(0, 2, n)) * rng.integers(1, 4, n).astype(float)
            if d.any():
                assert SignFlip(d).p_value(0.0) == pytest.approx(scipy_p(d), abs=1e-12), d
    d = rng.normal(0.3, 1.0, 60)
    assert SignFlip(d).p_value(0.0) == pytest.approx(scipy_p(d, resamples=200_000), abs=0.01)


def test_the_interval_is_the_test_inverted() -> None:
    """0 lies in the interval exactly when p(0) ≥ α; just outside each edge the test rejects. A mutant that gives the
    bootstrap's percentile interval instead ([0.167, 0.833] on the hand case, p = 0.25) fails the first check."""
    rng = np.random.default_rng(3)
    cases = [np.array([0, 1, 0, 1, 1, 0.0])] + [rng.normal(m, 1.0, n) for m, n in ((0.0, 12), (0.8, 12), (0.3, 80))]
    for d in cases:
        test = SignFlip(d)
        low, high = test.interval()
        assert (low <= 0 <= high) == (test.p_value(0.0) >= ALPHA), (d, low, high)
        assert test.p_value(low) >= ALPHA and test.p_value(high) >= ALPHA
        assert test.p_value(low - 1e-3) < ALPHA and test.p_value(high + 1e-3) < ALPHA
    # the hand case: three of six pairs won, none lost, p = 0.25: "no evidence", and the interval must say so too
    assert paired_difference(np.array([0, 1, 0, 1, 1, 0.0]), np.zeros(6)).low <= 0


def test_the_interval_matches_students_for_many_normal_pairs() -> None:
    d = np.random.default_rng(1).normal(0.3, 1.0, 100)
    low, high = SignFlip(d).interval()
    t = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    width = t.high - t.low
    assert abs(low - t.low) < 0.05 * width and abs(high - t.high) < 0.05 * width


def test_too_few_pairs_give_an_unbounded_interval_and_no_evidence() -> None:
    result = paired_difference(np.ones(5), np.zeros(5))  # 2/2^5 = 0.0625: no sign pattern of 5 is rare enough
    assert (result.low, result.high, result.verdict) == (-math.inf, math.inf, "no evidence")
    assert result.p_value == pytest.approx(2 / 32)
    assert paired_difference(np.ones(6), np.zeros(6)).verdict == "better"
    assert paired_difference(np.zeros(6), np.ones(6)).verdict == "worse"
    one = paired_difference(np.ones(1), np.zeros(1))
    assert one.n == 1 and math.isnan(one.p_value) and one.verdict == "no evidence"


def test_identical_scores_differ_by_exactly_zero() -> None:
    scores = np.array([0.0, 3, 1, 7, 2, 2])
    assert paired_difference(scores, scores.copy()) == paired_difference(scores, scores)
    result = paired_difference(scores, scores)
    assert (result.difference, result.low, result.high, result.p_value, result.verdict) == (0, 0, 0, 1, "no evidence")


def test_mean_interval() -> None:
    assert mean_interval(np.array([2.0, 2, 2])) == mean_interval(np.array([2.0, 2, 2]))
    point = mean_interval(np.array([2.0, 2, 2]))
    assert (point.n, point.mean, point.low, point.high) == (3, 2, 2, 2)
    single = mean_interval(np.array([1.0]))
    assert single.mean == 1 and math.isnan(single.low)
    spread = mean_interval(np.random.default_rng(0).normal(5.0, 2.0, 200))
    assert spread.low < spread.mean < spread.high and 0.3 < spread.high - spread.low < 0.8  # ≈ 2·1.96·2/√200 = 0.55


def episodes(rows: list[tuple[str, str, int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"task": t, "agent": a, "episode": e, "seed": e, "score": s, "norm_score": n, "status": "ok"}
            for t, a, e, s, n in rows
        ]
    )


def test_compare_pairs_on_task_seed_and_episode_and_pools_normalised_scores() -> None:
    rows = [(t, "static", e, 0.0, 0.0) for t in ("a", "b") for e in range(8)]
    rows += [("a", "jitrl", e, 10.0, 1.0) for e in range(8)]  # wins every pair of task a
    rows += [("b", "jitrl", e, 0.0, 0.0) for e in range(7)]  # ties task b, and lacks its episode 7
    frame = compare(episodes(rows), "static")
    by_task = {r.task: r for r in frame.itertuples()}
    assert by_task["a"].verdict == "better" and by_task["a"].difference == 10 and by_task["a"].pairs == 8
    assert by_task["b"].verdict == "no evidence" and by_task["b"].difference == 0 and by_task["b"].pairs == 7
    pooled = by_task[POOLED]
    assert pooled.metric == "norm_score" and pooled.pairs == 15 and pooled.difference == pytest.approx(8 / 15)
    assert compare(episodes(rows), None).empty and compare(episodes(rows), "nobody").empty


def test_the_run_compares_identical_agents_as_no_evidence_and_says_so(tmp_path: Path) -> None:
    """β = 10^12 leaves JitRL's z' = z + Â/β at the static agent's z: the same draws, the same episodes. The table
    says "no evidence" with a difference of exactly 0, in the terminal, summary.md and comparison.csv."""
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", *FAST, "agent.beta=1e12", f"run.dir={run_dir}"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Against static" in result.output and "no evidence" in result.output
    comparison = pd.read_csv(run_dir / "comparison.csv")
    assert comparison.to_dict("records") == [
        {
            "task": "tw-simple-7",
            "agent": "jitrl",
            "reference": "static",
            "metric": "score",
            "pairs": 6,
            "difference": 0.0,
            "low": 0.0,
            "high": 0.0,
            "p_value": 1.0,
            "verdict": "no evidence",
        }
    ]
    assert (
        "| tw-simple-7 | jitrl | score | 6 | +0 [0, 0] | 1.000 | no evidence |" in (run_dir / "summary.md").read_text()
    )
    summary = pd.read_csv(run_dir / "summary.csv")
    assert (summary.mean_low <= summary.mean_score).all() and (summary.mean_score <= summary.mean_high).all()
    page = (run_dir / "report.html").read_text()
    assert '<section id="comparison">' in page and '"verdict": "no evidence"' in page
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    scores = {(r["agent"], r["episode"]): r["score"] for r in rows}
    assert all(scores[("jitrl", e)] == scores[("static", e)] for e in range(6))


def test_compare_to_names_the_reference_or_nothing(tmp_path: Path) -> None:
    wrong = CliRunner().invoke(app, ["run", *FAST, "run.compare_to=jirl", f"run.dir={tmp_path / 'x'}"])
    assert wrong.exit_code == 2 and "run.compare_to='jirl' names no agent of this run (jitrl, static)" in wrong.output
    assert not (tmp_path / "x").exists()  # refused before anything ran
    run_dir = tmp_path / "none"
    done = CliRunner().invoke(app, ["run", *FAST, "run.episodes=2", "run.compare_to=null", f"run.dir={run_dir}"])
    assert done.exit_code == 0, done.output
    assert "Against" not in done.output and pd.read_csv(run_dir / "comparison.csv").empty
    flipped = tmp_path / "flipped"
    done = CliRunner().invoke(app, ["run", *FAST, "run.episodes=2", "run.compare_to=jitrl", f"run.dir={flipped}"])
    assert done.exit_code == 0, done.output
    assert set(pd.read_csv(flipped / "comparison.csv").agent) == {"static"}


def test_an_unbounded_interval_reaches_the_report_as_words() -> None:
    """Fewer than 6 pairs give ±inf bounds; the report's JSON (no NaN or Infinity allowed) carries them as text."""
    from jitrl_bench.results.report import _inline_json, _records

    frame = compare(
        episodes([("a", a, e, float(e * (a == "x")), 0.0) for a in ("static", "x") for e in range(4)]), "static"
    )
    record = json.loads(_inline_json({"rows": _records(frame)}))["rows"][0]
    assert (record["low"], record["high"], record["verdict"]) == ("-inf", "inf", "no evidence")
