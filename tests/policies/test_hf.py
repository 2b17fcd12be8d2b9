"""HFPolicy on the real SmolLM2-135M-Instruct: shared-prefix scoring must equal the plain full-sequence sums.

Scores are compared in float32 (the reference dtype) within `tolerance.assert_same_scores`: rounding alone, scaled to
each candidate's tokens and size (the derivation, and what the mutants below move, are in tests/policies/tolerance.py).
Tests that compare nothing run the model in the dtype `policy.dtype=auto` picks on this machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jitrl_bench.contract import Prompt, Usage
from jitrl_bench.errors import UserError
from jitrl_bench.policies import models
from jitrl_bench.policies.dtype import choose
from jitrl_bench.policies.hf import HFPolicy, HFPolicyConfig
from jitrl_bench.policies.models import smollm2_path
from tests.policies.tolerance import assert_same_scores, score_tolerance

SYSTEM = "You are playing a text adventure game. Reply with exactly one command from the list of valid actions."
OBSERVATION = """Kitchen
You are standing in a small, dusty kitchen. A wooden table stands in the middle of the room, and on it lies a red key
next to a half-eaten loaf of bread. A rusty stove leans against the east wall. To the north, a narrow corridor leads
into darkness; to the south you can see the garden through an open archway. A heavy oak door, firmly closed, is set into
the west wall. Somewhere above you, floorboards creak.

Your score is 10 out of 350, in 23 moves. You are carrying a brass lantern (providing light) and a folded map.

Valid actions: go north, go south, take the red key from the table, open door, eat bread, examine stove, look,
inventory, go
What do you do?"""
CANDIDATES = [
    "go north",
    "go south",
    "take the red key from the table",
    "open door",
    "eat bread",
    "examine stove",
    "look",
    "go",
]


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    return HFPolicyConfig(model=str(smollm2_path()), dtype="float32").make()


@pytest.fixture(scope="module")
def auto_policy() -> HFPolicy:
    """The embedded model as runs load it (`auto`): the suite's time does not hinge on the CPU's bf16."""
    policy = HFPolicyConfig(model="smollm2").make()
    assert policy.model.dtype == {"float32": torch.float32, "bfloat16": torch.bfloat16}[choose("auto", "cpu").name]
    return policy


@pytest.fixture(scope="module")
def prompt() -> Prompt:
    return Prompt.chat(SYSTEM, OBSERVATION)


def reference(policy: HFPolicy, prompt: Prompt, candidate: str, end_of_turn: bool = True) -> float:
    """Independent check: one unpadded forward of prompt+candidate, summing the candidate's token log-probs."""
    ids = policy.prompt_ids(prompt)
    cand = policy.candidate_ids(candidate)
    cand = cand if end_of_turn else cand[:-1]
    with torch.inference_mode():
        logits = policy.model(input_ids=torch.tensor([ids + cand])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[len(ids) - 1 + j, token] for j, token in enumerate(cand)))


@pytest.mark.slow
def test_shared_prefix_matches_naive(policy: HFPolicy, prompt: Prompt) -> None:
    """The default scorer (one pass) against K padded full sequences. Fails (by over 100×) with a mask that lets a
    candidate see the candidates before it: tried by hand."""
    assert 150 <= len(policy.prompt_ids(prompt)) <= 400  # a realistic observation-sized prompt
    shared = policy.score(prompt, CANDIDATES).z
    naive = policy.score_naive(prompt, CANDIDATES)
    assert shared.dtype == np.float64 and shared.shape == (len(CANDIDATES),)
    assert_same_scores(shared, naive, policy, CANDIDATES)


@pytest.mark.slow
def test_scores_separate_late_differences(auto_policy: HFPolicy, prompt: Prompt) -> None:
    candidates = ["go north", "go south", "open door"]
    scores = auto_policy.score(prompt, candidates).z
    assert np.all(np.isfinite(scores)) and np.all(scores <= 0)
    # "north" and "south" differ in their last word only, yet the model tells them apart: 1.37 nats in bfloat16 here,
    # far above bf16 rounding of these sums (~1% of |z| as measured against float64, i.e. ~0.1-0.3)
    assert abs(scores[0] - scores[1]) > 0.5


@pytest.mark.slow
def test_end_of_turn_is_counted(policy: HFPolicy, prompt: Prompt) -> None:
    """One pass against single unpadded sequences; "go north" follows "go" in the pass, so a mask that lets it see
    "go" fails this (by 28×, the smallest effect of that mutant: tolerance.py)."""
    candidates = ["go", "go north"]
    scores = policy.score(prompt, candidates).z
    assert_same_scores(scores, np.array([reference(policy, prompt, c) for c in candidates]), policy, candidates)
    # Without end-of-turn "go" would get its prefix score for free; with it, "go" pays for stopping there.
    unended = reference(policy, prompt, "go", end_of_turn=False)
    assert scores[0] < unended - 10 * score_tolerance(policy, ["go"], scores[:1])[0]


@pytest.mark.slow
def test_small_batches_and_token_accounting(policy: HFPolicy, prompt: Prompt) -> None:
    empty = policy.score(prompt, [])
    assert empty.z.shape == (0,) and empty.usage == Usage()
    scored = policy.score(prompt, ["take the red key from the table"])
    # issue 26: on AVX2 this is -12.763801 against a reference of -12.763955, 8 tokens: within 162 epsilons a token,
    # the tolerance allows 1,024. Candidate positions shifted by one move it by 0.27 (280× the tolerance): tried.
    want = reference(policy, prompt, "take the red key from the table")
    assert_same_scores(scored.z, np.array([want]), policy, ["take the red key from the table"])
    # one call: the prompt's tokens once (shared prefix) plus the candidate's tokens and its end-of-turn
    candidate = policy.candidate_ids("take the red key from the table")
    assert scored.usage == Usage(1, len(policy.prompt_ids(prompt)) + len(candidate), 0)
    # The same prompt twice reuses the prefill; the reused cache must not have been changed by the first call. Both
    # calls do the same arithmetic in the same order, so they are equal to the bit: exactness is the point here.
    np.testing.assert_array_equal(policy.score(prompt, CANDIDATES[:3]).z, policy.score(prompt, CANDIDATES[:3]).z)


@pytest.mark.slow
def test_generate(auto_policy: HFPolicy) -> None:
    policy = auto_policy
    asked = Prompt.chat("You are a helpful assistant.", "What is the capital of France?")
    reply = policy.generate(asked, 16)
    assert isinstance(reply.text, str) and reply.text.strip()
    assert "<|" not in reply.text
    assert reply.usage.calls == 1 and reply.usage.prompt_tokens == len(policy.prompt_ids(asked))
    assert 1 <= reply.usage.completion_tokens <= 16


@pytest.mark.slow
def test_raw_completion_has_no_chat_template(auto_policy: HFPolicy) -> None:
    policy = auto_policy
    text = "Task Instruction: name a colour\n\nRound 0\n\nThe sky is"
    reply = policy.complete(text, 12, stop=("\n",))
    assert reply.text and "\n" not in reply.text and "<|" not in reply.text
    ids = policy.tokens.raw_ids(text)
    assert reply.usage.prompt_tokens == len(ids) < len(policy.prompt_ids(Prompt.chat("", text)))  # no template
    assert policy.tokens.decode(ids) == text
    assert policy.completer() is policy


@pytest.mark.slow
def test_smollm2_path_is_converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = smollm2_path()

    def convert_again(gguf: object, out: object) -> None:
        raise AssertionError("the converted folder was there: converting again is the bug")

    monkeypatch.setattr(models, "_convert_gguf", convert_again)
    second = smollm2_path()
    assert first == second
    assert (second / "config.json").is_file() and (second / models.MARKER).is_file()
    assert list(second.glob("*.safetensors"))
    (second / models.MARKER).unlink()  # a folder without its marker is an interrupted conversion: it is redone
    with pytest.raises(AssertionError, match="converting again"):
        smollm2_path()
    monkeypatch.undo()
    assert smollm2_path() == first and (first / models.MARKER).is_file()


def test_missing_model_folder_is_a_user_error() -> None:
    with pytest.raises(UserError, match="/nonexistent/path"):
        HFPolicyConfig(model="/nonexistent/path").make()


def test_bad_dtype_is_a_user_error() -> None:
    with pytest.raises(UserError, match="dtype"):
        HFPolicyConfig(model="smollm2", dtype="float8").make()


def many_candidates(k: int) -> list[str]:
    verbs = ["go", "take", "open", "examine", "eat", "push"]
    things = ["north", "the red key from the table", "door", "stove", "bread", "loaf of bread on the wooden table"]
    return [f"{verbs[i % len(verbs)]} {things[(i // len(verbs) + i) % len(things)]}"[: 4 + i % 40] for i in range(k)]


@pytest.mark.slow
@pytest.mark.parametrize("pass_tokens", [2048, 16])
def test_one_pass_equals_the_other_scorers(prompt: Prompt, pass_tokens: int) -> None:
    """One pass (block attention mask, positions restarting per candidate), chunked or not, gives the log-probs of
    K separate sequences: the same as the shared-prefix scorer and the padded reference, within rounding in float32
    (`tolerance.py`). A mask letting candidates see each other moves most of the 41 by over 1 nat: tried by hand."""
    policy = HFPolicyConfig(model="smollm2", dtype="float32", pass_tokens=pass_tokens).make()
    candidates = ["go", *many_candidates(40)]  # "go" is a one-token reply plus end-of-turn; others up to ~12 tokens
    one_pass = policy.score(prompt, candidates).z
    assert_same_scores(one_pass, policy.score_shared_prefix(prompt, candidates), policy, candidates)
    assert_same_scores(one_pass[:12], policy.score_naive(prompt, candidates[:12]), policy, candidates[:12])
    assert len(set(np.round(one_pass, 3))) > 30  # distinct numbers: a mask mixing candidates would blur them


@pytest.mark.slow
def test_prefix_cache_runs_only_the_new_suffix_and_changes_nothing(policy: HFPolicy, prompt: Prompt) -> None:
    before = policy.score(prompt, CANDIDATES).z
    longer = Prompt.chat(SYSTEM, OBSERVATION + "\nThe floorboards creak again.")
    after = policy.score(longer, CANDIDATES).z
    prefill = policy._prefill(policy.prompt_ids(longer))
    assert prefill.reused > 0.8 * len(policy.prompt_ids(prompt))  # the system text and the observation came cached
    fresh = HFPolicyConfig(model="smollm2", dtype="float32", prefix_cache=0).make()
    # from the cached prefix vs a fresh prefill, then the first prompt again (its cache untouched): the same numbers
    # up to the order of the sums (the cached keys are read in another pass). Shifted positions fail both.
    assert_same_scores(after, fresh.score(longer, CANDIDATES).z, policy, CANDIDATES)
    assert_same_scores(policy.score(prompt, CANDIDATES).z, before, policy, CANDIDATES)


@pytest.mark.slow
def test_decisions_of_episodes_in_flight_are_batched_and_unchanged(prompt: Prompt) -> None:
    """Requests waiting together (episodes in flight) are read in one pass: new, partly cached and cached prompts, long
    and one-token candidates; each request's numbers equal those it gets alone."""
    import threading
    import time

    policy = HFPolicyConfig(model="smollm2", dtype="float32").make()
    alone = HFPolicyConfig(model="smollm2", dtype="float32", prefix_cache=0).make()
    prompts = [prompt, Prompt.chat(SYSTEM, OBSERVATION + " A bell rings."), Prompt.chat(SYSTEM, "A maze."), prompt]
    candidates = [CANDIDATES, many_candidates(12), ["go", "look"], CANDIDATES[:3]]
    expected = [alone.score(p, c).z for p, c in zip(prompts, candidates, strict=True)]
    policy.score(prompt, CANDIDATES[:2])  # a cached prompt: the batch mixes cached, partly cached and new ones
    results: list[np.ndarray] = [np.zeros(0)] * len(prompts)

    def decide(i: int) -> None:
        results[i] = policy.score(prompts[i], candidates[i]).z

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(len(prompts))]
    with policy.batcher.engine:  # the model is busy: the four decisions queue up, as episodes in flight do
        for thread in threads:
            thread.start()
        deadline = time.time() + 30
        while policy.batcher.waiting < len(prompts) and time.time() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert policy.batcher.largest == len(prompts)  # one pass served all four
    # one shared pass against each request alone: rounding only; a mask that lets requests see each other fails it
    for got, want, asked in zip(results, expected, candidates, strict=True):
        assert_same_scores(got, want, policy, asked)
