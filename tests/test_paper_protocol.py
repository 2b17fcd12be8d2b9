"""The paper's protocol, part by part: proposals (parse, repair, fall back, keep or drop), the LLM step evaluator
(scale, failure rule, zero rule, fall back), the summary field, the return quirk, and the whole paper decision against
an independent statement of the reference's rules. The LLM is a scripted generator here (what it says is outside these
tests' subject); the real models run in test_reproduce.py."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jitrl_bench.agents.jitrl_paper import PaperRules, paper_choice
from jitrl_bench.agents.propose import NoProposal, Proposal, ProposalConfig, parse_options, propose
from jitrl_bench.agents.summary import render
from jitrl_bench.contract import Candidate, Generated, Generator, Prompt, Scored, StepView, Usage
from jitrl_bench.envs.text_prompt import TEXT_GAME
from jitrl_bench.envs.web_prompt import WebPrompt
from jitrl_bench.jitrl.memory import Neighbour
from jitrl_bench.jitrl.returns import discounted_return
from jitrl_bench.policies.tokens import ApproxWindow
from jitrl_bench.rewards.base import FinishedEpisode, StepTrace
from jitrl_bench.rewards.evaluator import LLMRewards, LLMRewardsConfig, parse_scores


@dataclass
class Scripted:
    """A policy whose replies are given in advance (one per generate call)."""

    replies: list[str]
    name: str = "scripted"
    window: ApproxWindow = field(default_factory=ApproxWindow)
    asked: list[Prompt] = field(default_factory=list)

    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        self.asked.append(prompt)
        return Generated(self.replies.pop(0), Usage(1, 10, 5))

    def score(self, prompt: Prompt, candidates: Any) -> Scored:
        return Scored(np.log(np.full(len(candidates), 1 / len(candidates))), Usage(1, 10, 0))

    def chooser(self) -> None:
        return None

    def generator(self) -> Generator:
        return self

    def completer(self) -> None:
        return None

    def close(self) -> None:
        return None


def text_view(*commands: str) -> StepView:
    return StepView("zork1", "West of House", tuple(Candidate(c, c, c) for c in commands), {"location": "West"},
                    TEXT_GAME, free_text=True)  # fmt: skip


def web_view() -> StepView:
    candidates = (Candidate("click('12')", "click link[Issues]", "click link 'Issues'"),
                  Candidate("click('13')", "click button[Save]", "click button 'Save'"))  # fmt: skip
    return StepView("44", "[12] link 'Issues'\n[13] button 'Save'", candidates, {"url": "gitlab"}, WebPrompt())


OPTIONS = '{"options": [%s], "best": %d}'


def option(action: str, confidence: int) -> str:
    return f'{{"action": "{action}", "reason": "why not", "confidence": {confidence}}}'


# ---- proposals ----------------------------------------------------------------------------------------------------


def test_proposals_become_candidates_with_confidences() -> None:
    policy = Scripted([OPTIONS % (", ".join([option("open mailbox", 60), option("Go  North", 30),
                                             option("xyzzy", 10)]), 1)])  # fmt: skip
    got = propose(
        ProposalConfig(mode="verbalized", k=3), policy, Prompt.chat("s", "u"), text_view("open mailbox", "north")
    )
    assert isinstance(got, Proposal) and not got.repaired
    # listed actions keep the env's candidate; others are kept as free commands (text games, outside=keep)
    assert [c.action for c in got.candidates] == ["open mailbox", "go north", "xyzzy"]
    np.testing.assert_allclose(got.p, [0.6, 0.3, 0.1])
    assert got.best == 0 and got.usage.by_purpose["proposing"] == Usage(1, 10, 5)
    assert "Propose the 3 best next actions" in policy.asked[0].messages[-1].content


def test_outside_actions_are_dropped_when_asked_and_always_on_the_web() -> None:
    reply = OPTIONS % (", ".join([option("open mailbox", 70), option("xyzzy", 30)]), 2)
    got = propose(ProposalConfig(mode="verbalized", k=2, outside="drop"), Scripted([reply]), Prompt.chat("s", "u"),
                  text_view("open mailbox"))  # fmt: skip
    assert isinstance(got, Proposal) and [c.action for c in got.candidates] == ["open mailbox"]
    assert got.dropped == ("xyzzy",) and got.best is None  # the LLM's best was dropped
    web = OPTIONS % (", ".join([option("click('13')", 50), option("goto('http://evil')", 50)]), 1)
    got = propose(ProposalConfig(mode="verbalized", k=2), Scripted([web]), Prompt.chat("s", "u"), web_view())
    assert isinstance(got, Proposal) and [c.key for c in got.candidates] == ["click button[Save]"]


def test_a_bad_reply_is_repaired_once_then_falls_back() -> None:
    good = OPTIONS % (option("north", 100), 1)
    policy = Scripted(["I think north", good])
    got = propose(ProposalConfig(mode="verbalized", k=1), policy, Prompt.chat("s", "u"), text_view("north"))
    assert isinstance(got, Proposal) and got.repaired and [c.action for c in got.candidates] == ["north"]
    repair = policy.asked[1].messages
    assert repair[-2].role == "assistant" and "no JSON object" in repair[-1].content  # told what was wrong
    failed = propose(ProposalConfig(mode="verbalized", k=1), Scripted(["nope", '{"options": 3}']),
                     Prompt.chat("s", "u"), text_view("north"))  # fmt: skip
    assert isinstance(failed, NoProposal) and "after one repair" in failed.reason
    assert failed.usage.by_purpose["proposing"].calls == 2


def test_parse_options_is_strict_about_what_it_keeps() -> None:
    options, _ = parse_options('xx {"options": [{"action": " open  door ", "confidence": 140}, {"action": ""}, 7]}', 3)
    assert options is not None and [(o.action, o.confidence) for o in options] == [("open door", 100.0)]
    assert parse_options('{"options": [{"action": "a", "confidence": "high"}], "best": 1}', 3)[0][0].confidence == 0  # type: ignore[index]
    for bad in ("", "{", '{"best": 1}', '{"options": [{"reason": "x"}]}'):
        assert parse_options(bad, 3)[0] is None


# ---- the step evaluator -------------------------------------------------------------------------------------------


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


def test_summary_field_from_the_reply() -> None:
    reply = (
        '{"summary": "Looking  for the egg.", "milestones": ["open window -> +10"], "locations": ["West", "Kitchen"]}'
    )
    assert render(reply) == "Progress: open window -> +10\nLocation: West -> Kitchen\nSummary: Looking for the egg."
    assert render("not json at all") == "not json at all"


# ---- the whole decision, against the reference's rules stated here independently -------------------------------


def reference_decision(
    proposals: list[tuple[str, float]], best: int | None, retrieved: list[tuple[str, list[float]]], gamma: float,
    lam: float, draws: list[float], episodes: int, web: bool, on_page: set[str],
) -> str:  # fmt: skip
    """The reference's update_scores and choice (shared notes, JITRL.md; helper's reading of its code), as prose:
    G = Σ γ^u r_u; Q per action = mean G; V = mean G over samples; memory actions join with p 0 if mean G > 0
    (Jericho) or if on the page (web); each unseen proposal draws: < λ → Q = V + 1/count else 0; if any was unseen,
    V = mean of every Q; A = Q − V, divided by the largest positive A (else by |min A|); score = p + w·A with
    w = min(1 + episodes/50·0.5, 1.5); argmax (first on ties); nothing retrieved → the LLM's best."""
    if not retrieved:
        return proposals[best][0] if best is not None else max(proposals, key=lambda x: x[1])[0]
    returns: dict[str, list[float]] = {}
    for action, future in retrieved:
        returns.setdefault(action, []).append(sum(r * gamma**u for u, r in enumerate(future)))
    q = {a: sum(g) / len(g) for a, g in returns.items()}
    v = sum(g for gs in returns.values() for g in gs) / len(retrieved)
    table = [(a, p) for a, p in proposals]
    for action in returns:
        if action not in dict(proposals) and (action in on_page if web else q[action] > 0):
            table.append((action, 0.0))
    draw = iter(draws)
    unseen = [a for a, _ in proposals if a not in q]
    for action in unseen:
        q[action] = v + 1.0 / len(retrieved) if next(draw) < lam else 0.0
    if unseen:
        v = sum(q.values()) / len(q)
    adv = {a: q[a] - v for a in q}
    top = max(adv.values())
    scale = top if top > 0 else abs(min(adv.values()))
    w = min(1 + episodes / 50 * 0.5, 1.5)
    scores = [p + w * (adv[a] / scale if scale > 0 else 0.0) for a, p in table]
    return table[int(np.argmax(scores))][0]


@pytest.mark.parametrize("seed", range(300))
def test_paper_decision_equals_the_reference_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    actions = ["north", "south", "open door", "take lamp", "read leaflet", "xyzzy"]
    k = int(rng.integers(1, 4))
    chosen = list(rng.choice(actions, size=k, replace=False))
    confidences = rng.integers(0, 101, size=k).astype(float)
    proposals = [(a, c / 100) for a, c in zip(chosen, confidences, strict=True)]
    best = int(rng.integers(k)) if rng.random() < 0.8 else None
    retrieved = [(str(rng.choice(actions)), list(rng.integers(-10, 11, size=int(rng.integers(1, 5))).astype(float)))
                 for _ in range(int(rng.integers(0, 8)))]  # fmt: skip
    gamma, lam, episodes = 0.5, float(rng.choice([0.05, 0.3, 0.8])), int(rng.integers(0, 80))
    web = bool(rng.random() < 0.3)
    on_page = {a for a in actions if rng.random() < 0.5}
    seed_draws = int(rng.integers(2**31))
    draws = random.Random(seed_draws)
    expected = reference_decision(proposals, best, retrieved, gamma, lam, [draws.random() for _ in range(10)],
                                  episodes, web, on_page)  # fmt: skip
    neighbours = [
        Neighbour(i, 1.0, action, discounted_return(future, gamma), 0) for i, (action, future) in enumerate(retrieved)
    ]
    rules = PaperRules(w_start=1.0, w_end=1.5, w_ramp=50, memory_actions_positive=not web)
    got = paper_choice(chosen, np.array([p for _, p in proposals]), best, neighbours, rules, lam,
                       random.Random(seed_draws), episodes, (lambda key: key in on_page) if web else None)  # fmt: skip
    assert got.keys[got.index] == expected


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
