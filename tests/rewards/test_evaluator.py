"""The paper's LLM step evaluator (`reward=llm`, rewards/evaluator.py): the reference's scoring rules, its repair and
fallback, the return quirk, and an evaluator that is another policy than the acting one, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitrl_bench.memory.returns import discounted_return
from jitrl_bench.rewards.base import FinishedEpisode, StepTrace
from jitrl_bench.rewards.evaluator import LLMRewards, LLMRewardsConfig, parse_scores
from tests.scripted import Scripted


def episode(won: bool, rewards: list[float]) -> FinishedEpisode:
    steps = tuple(StepTrace(f"state {t}", f"action {t}", r) for t, r in enumerate(rewards))
    return FinishedEpisode("zork1", "", steps, "the end", won, sum(rewards), 350.0)


def test_evaluator_scores_steps_with_the_reference_rules() -> None:
    judge = LLMRewards(LLMRewardsConfig(scale=10), Scripted(['{"scores": [3, 0, -2]}']), 4096)
    got = judge.rewards(episode(False, [5.0, 5.0, 0.0]))
    # failed: the last env reward becomes -10; the LLM's 0 on step 2 gives way to the env reward (env_when_zero)
    assert got.values == [3.0, 5.0, -2.0] and got.fallback == "" and got.record["env_rewards"] == [5.0, 5.0, -10.0]
    assert "Outcome: FAILURE" in judge.generator.asked[0].messages[-1].content  # type: ignore[attr-defined]
    only_llm = LLMRewards(LLMRewardsConfig(scale=3, env_when_zero=False), Scripted(['{"scores": [9, 0]}']), 4096)
    assert only_llm.rewards(episode(True, [1.0, 1.0])).values == [3.0, 0.0]  # clipped to the scale; zeros stay


def test_evaluator_falls_back_to_env_rewards_after_one_repair() -> None:
    judge = LLMRewards(LLMRewardsConfig(), Scripted(["great job", '{"scores": "all good"}']), 4096)
    got = judge.rewards(episode(False, [1.0, 2.0]))
    assert got.values == [1.0, -10.0] and "after one repair" in got.fallback and got.usage.calls == 2
    assert parse_scores('{"scores": [1]}', 3, 10) == ([1.0, 0.0, 0.0], "")  # steps left out score 0


def test_zero_fill_is_the_reference_return_quirk() -> None:
    assert discounted_return([2.0, 0.0, 1.0], 0.5) == pytest.approx(2.25)
    assert discounted_return([2.0, 0.0, 1.0], 0.5, zero_fill=True) == pytest.approx(2.0 + 0.5 * 2.0 + 0.25 * 1.0)


@pytest.mark.slow
def test_the_evaluator_can_be_another_policy_than_the_acting_one(tmp_path: Path) -> None:
    """reward.policy: the random (uniform) policy acts, the embedded model evaluates; only the evaluator calls."""
    from typer.testing import CliRunner

    from jitrl_bench.cli import app

    evaluator = "{_target_:jitrl_bench.policies.hf.HFPolicyConfig,model:smollm2}"  # dtype: auto
    run_dir = tmp_path / "r"
    args = ["run", "policy=uniform", "reward=llm", f"reward.policy={evaluator}", "run.episodes=2", "run.max_steps=3",
            "run.baselines=[]", "run.progress=false", f"run.dir={run_dir}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["calls_by_purpose"] == {"evaluating": 1} and row["reward_fallback"] == ""
        kept = json.loads((run_dir / "rewards" / row["task"] / "jitrl" / f"{row['episode']}.json").read_text())
        assert kept["episode_uid"] == row["episode_uid"] and len(kept["scores"]) == row["steps"]
        assert row["return"] == pytest.approx(sum(kept["rewards"]))  # memory got the evaluator's rewards
    assert {r["policy"] for r in rows} == {"uniform"}  # the rows name the acting policy
