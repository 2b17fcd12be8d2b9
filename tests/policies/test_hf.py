"""HFPolicy on the real SmolLM2-135M-Instruct: shared-prefix scoring must equal the plain full-sequence sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jitrl_bench.contract import Prompt, Usage
from jitrl_bench.errors import UserError
from jitrl_bench.policies import models
from jitrl_bench.policies.hf import HFPolicy, HFPolicyConfig
from jitrl_bench.policies.models import smollm2_path

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
    assert 150 <= len(policy.prompt_ids(prompt)) <= 400  # a realistic observation-sized prompt
    shared = policy.score(prompt, CANDIDATES).z
    naive = policy.score_naive(prompt, CANDIDATES)
    assert shared.dtype == np.float64 and shared.shape == (len(CANDIDATES),)
    np.testing.assert_allclose(shared, naive, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_scores_separate_late_differences(policy: HFPolicy, prompt: Prompt) -> None:
    scores = policy.score(prompt, ["go north", "go south", "open door"]).z
    assert np.all(np.isfinite(scores)) and np.all(scores <= 0)
    assert abs(scores[0] - scores[1]) > 1e-3


@pytest.mark.slow
def test_end_of_turn_is_counted(policy: HFPolicy, prompt: Prompt) -> None:
    go, go_north = policy.score(prompt, ["go", "go north"]).z
    assert go == pytest.approx(reference(policy, prompt, "go"), abs=1e-4)
    assert go_north == pytest.approx(reference(policy, prompt, "go north"), abs=1e-4)
    # Without end-of-turn "go" would get its prefix score for free; with it, "go" pays for stopping there.
    assert go < reference(policy, prompt, "go", end_of_turn=False) - 1e-3


@pytest.mark.slow
def test_small_batches_and_token_accounting(policy: HFPolicy, prompt: Prompt) -> None:
    empty = policy.score(prompt, [])
    assert empty.z.shape == (0,) and empty.usage == Usage()
    scored = policy.score(prompt, ["take the red key from the table"])
    (one,) = scored.z
    assert one == pytest.approx(reference(policy, prompt, "take the red key from the table"), abs=1e-4)
    # one call: the prompt's tokens once (shared prefix) plus the candidate's tokens and its end-of-turn
    candidate = policy.candidate_ids("take the red key from the table")
    assert scored.usage == Usage(1, len(policy.prompt_ids(prompt)) + len(candidate), 0)
    # The same prompt twice reuses the prefill; the reused cache must not have been changed by the first call.
    np.testing.assert_array_equal(policy.score(prompt, CANDIDATES[:3]).z, policy.score(prompt, CANDIDATES[:3]).z)


@pytest.mark.slow
def test_generate(policy: HFPolicy) -> None:
    asked = Prompt.chat("You are a helpful assistant.", "What is the capital of France?")
    reply = policy.generate(asked, 16)
    assert isinstance(reply.text, str) and reply.text.strip()
    assert "<|" not in reply.text
    assert reply.usage.calls == 1 and reply.usage.prompt_tokens == len(policy.prompt_ids(asked))
    assert 1 <= reply.usage.completion_tokens <= 16


@pytest.mark.slow
def test_raw_completion_has_no_chat_template(policy: HFPolicy) -> None:
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
    K separate sequences: the same as the shared-prefix scorer and the padded reference to 1e-4 in float32."""
    policy = HFPolicyConfig(model="smollm2", dtype="float32", pass_tokens=pass_tokens).make()
    candidates = ["go", *many_candidates(40)]  # "go" is a one-token reply plus end-of-turn; others up to ~12 tokens
    one_pass = policy.score(prompt, candidates).z
    np.testing.assert_allclose(one_pass, policy.score_shared_prefix(prompt, candidates), rtol=0, atol=1e-4)
    np.testing.assert_allclose(one_pass[:12], policy.score_naive(prompt, candidates[:12]), rtol=0, atol=1e-4)
    assert len(set(np.round(one_pass, 3))) > 30  # distinct numbers: a mask mixing candidates would blur them


@pytest.mark.slow
def test_prefix_cache_runs_only_the_new_suffix_and_changes_nothing(policy: HFPolicy, prompt: Prompt) -> None:
    before = policy.score(prompt, CANDIDATES).z
    longer = Prompt.chat(SYSTEM, OBSERVATION + "\nThe floorboards creak again.")
    after = policy.score(longer, CANDIDATES).z
    prefill = policy._prefill(policy.prompt_ids(longer))
    assert prefill.reused > 0.8 * len(policy.prompt_ids(prompt))  # the system text and the observation came cached
    fresh = HFPolicyConfig(model="smollm2", dtype="float32", prefix_cache=0).make()
    np.testing.assert_allclose(after, fresh.score(longer, CANDIDATES).z, rtol=0, atol=1e-4)
    np.testing.assert_allclose(policy.score(prompt, CANDIDATES).z, before, rtol=0, atol=1e-5)  # its cache untouched


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
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
