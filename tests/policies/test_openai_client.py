"""OpenAIPolicy (main venv) against a real vLLM server (.venv-vllm, CPU build), checked against HFPolicy float32.

The shared server returns processed logprobs (the bias included), so choice-mode decisions are checked against the
engine's own post-bias output (engine_evidence.py). The last test stops it mid-use and starts it again, so it must stay
the last one in this file.
"""

from __future__ import annotations

import re
import threading
import time

import httpx
import numpy as np
import pytest

from jitrl_bench.contract import Prompt
from jitrl_bench.errors import UserError
from jitrl_bench.policies.choice import option_labels, option_prompt, server_logit_bias
from jitrl_bench.policies.hf import HFPolicy
from jitrl_bench.policies.openai import OpenAIPolicy, OpenAIPolicyConfig
from jitrl_bench.policies.server import free_port
from tests.conftest_vllm import (
    BIAS,
    CANDIDATES,
    VLLMServerInfo,
    option_reference,
)

ATOL = 1e-3
"""vLLM's float32 scores against transformers' float32 on the same weights: two engines (vLLM's own attention kernel,
fused ops, its float32 log-softmax) doing the same sums in other orders, so rounding alone, as tests/policies/
tolerance.py derives it: 1e-3 nats over these candidates of at most 8 tokens is ~1,000 float32 epsilons a token, that
file's budget. A wrong mask, position or bias moves the worst-hit candidate by over 1 nat (tolerance.py)."""


def client(info: VLLMServerInfo, **overrides: object) -> OpenAIPolicy:
    settings: dict[str, object] = {
        "base_url": info.base_url, "model": info.model, "tokenizer": info.tokenizer, "api_key_env": info.api_key_env,
    }  # fmt: skip
    return OpenAIPolicyConfig(**{**settings, **overrides}).make()  # type: ignore[arg-type]


@pytest.mark.slow
def test_score_matches_transformers(vllm_server: VLLMServerInfo, hf: HFPolicy, prompt: Prompt) -> None:
    policy = client(vllm_server)
    policy.score(prompt, CANDIDATES)  # the first request pays for warm-up
    start = time.perf_counter()
    scored = policy.score(prompt, CANDIDATES)
    print(f"\nserver score K={len(CANDIDATES)}: {time.perf_counter() - start:.3f} s")
    scores = scored.z
    assert scores.dtype == np.float64 and scores.shape == (len(CANDIDATES),)
    np.testing.assert_allclose(scores, hf.score(prompt, CANDIDATES).z, rtol=0, atol=ATOL)
    # the server's own count: every candidate is a full prompt (ids + candidate + end-of-turn), one HTTP call
    sent = sum(len(policy.tokens.prompt_ids(prompt)) + len(policy.tokens.candidate_ids(c)) for c in CANDIDATES)
    assert scored.usage.calls == 1 and scored.usage.prompt_tokens == sent
    assert scored.usage.completion_tokens in (0, len(CANDIDATES))  # vLLM counts one generated token per prompt


@pytest.mark.slow
def test_choice_without_bias_is_the_models_own(vllm_server: VLLMServerInfo, hf: HFPolicy, prompt: Prompt) -> None:
    policy = client(vllm_server, mode="choice")
    reference = option_reference(hf, prompt, CANDIDATES)
    start = time.perf_counter()
    result = policy.choose(prompt, CANDIDATES, np.zeros(len(CANDIDATES)), 0.0, 0)
    print(f"\nserver choice K={len(CANDIDATES)}: {time.perf_counter() - start:.3f} s")
    np.testing.assert_allclose(result.z, reference, rtol=0, atol=ATOL)
    np.testing.assert_allclose(result.z_prime, result.z, rtol=0, atol=ATOL)  # the engine's two passes
    assert result.index == int(np.argmax(reference))
    np.testing.assert_allclose(policy.score(prompt, CANDIDATES).z, reference, rtol=0, atol=ATOL)  # choice mode: z
    assert result.site == "engine" and result.usage.calls >= 1 and result.usage.completion_tokens >= 1


@pytest.mark.slow
def test_choice_bias_shifts_log_odds_exactly(vllm_server: VLLMServerInfo, hf: HFPolicy, prompt: Prompt) -> None:
    policy = client(vllm_server, mode="choice")
    bias = np.array(BIAS)
    reference = option_reference(hf, prompt, CANDIDATES)
    result = policy.choose(prompt, CANDIDATES, bias, 0.0, 0)
    np.testing.assert_allclose(result.z, reference, rtol=0, atol=ATOL)  # z stays the unbiased distribution
    # z' is the engine's own post-bias log-probs (site "engine"), so this fails when the engine drops the bias
    # (mutants tried by hand: the client sends no logit_bias; the server ignores it: see test_engine_evidence.py)
    assert result.site == "engine"
    shift = result.z_prime - result.z
    np.testing.assert_allclose(shift - shift[0], bias - bias[0], rtol=0, atol=ATOL)
    # The server's greedy token follows the biased logits, away from the model's own favourite.
    assert result.index == int(np.argmax(reference + bias)) != int(np.argmax(reference))
    # Sampling: always an option, reproducible by seed, and a strong bias wins every draw.
    draws = [policy.choose(prompt, CANDIDATES, bias, 1.0, seed).index for seed in range(12)]
    assert all(0 <= d < len(CANDIDATES) for d in draws) and len(set(draws)) > 1
    assert draws[:4] == [policy.choose(prompt, CANDIDATES, bias, 1.0, seed).index for seed in range(4)]
    strong = np.zeros(len(CANDIDATES))
    strong[7] = 15.0
    assert {policy.choose(prompt, CANDIDATES, strong, 1.0, seed).index for seed in range(5)} == {7}


@pytest.mark.slow
def test_threads_share_one_client(vllm_server: VLLMServerInfo, prompt: Prompt) -> None:
    policy = client(vllm_server, max_concurrency=2)
    expected = policy.score(prompt, CANDIDATES[:4]).z
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = policy.score(prompt, CANDIDATES[:4]).z

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 2, 3]
    for scores in results.values():  # the server may batch the four: the same sums in another order, rounding only
        np.testing.assert_allclose(scores, expected, rtol=0, atol=ATOL)


@pytest.mark.slow
def test_generate_and_verbalized(vllm_server: VLLMServerInfo, prompt: Prompt) -> None:
    policy = client(vllm_server, mode="verbalized", tokenizer=None)  # chat API only: no tokenizer needed
    reply = policy.generate(Prompt.chat("You are a helpful assistant.", "What is the capital of France?"), 16)
    assert reply.text.strip() and "<|" not in reply.text
    assert reply.usage.calls == 1 and reply.usage.prompt_tokens > 0 and 1 <= reply.usage.completion_tokens <= 16
    z = policy.score(prompt, CANDIDATES[:4]).z
    assert z.shape == (4,) and np.all(np.isfinite(z))
    assert np.exp(z).sum() == pytest.approx(1.0)
    assert policy.parse_failures == 0  # the JSON schema keeps even a 135M model to the format
    biased = policy.choose(prompt, CANDIDATES[:4], np.array([0.0, 0.0, 0.0, 30.0]), 1.0, 0)
    assert biased.index == 3 and biased.site == "client"  # no option tokens to bias in verbalized mode
    assert policy.chooser() is None  # so an agent adds the bias itself, and its trace says "client"


@pytest.mark.slow
def test_raw_completion_through_v1_completions(vllm_server: VLLMServerInfo, hf: HFPolicy) -> None:
    policy = client(vllm_server, mode="score")
    text = "Task Instruction: name a colour\n\nRound 0\n\nThe sky is"
    reply = policy.complete(text, 12, stop=("\n",))
    assert reply.text and "\n" not in reply.text and reply.usage.calls == 1
    assert reply.usage.prompt_tokens == len(hf.tokens.raw_ids(text))  # the server's own count: one begin-of-text
    assert reply.text == hf.complete(text, 12, stop=("\n",)).text  # greedy: the same continuation


def test_unreachable_server_is_one_user_error(prompt: Prompt) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    policy = OpenAIPolicyConfig(base_url=url, tokenizer="smollm2", max_retries=2, backoff_s=0.05).make()
    with pytest.raises(UserError, match=re.escape(url)) as caught:
        policy.score(prompt, CANDIDATES[:2])
    assert "3 tries" in str(caught.value) and "\n" not in str(caught.value)


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"policy\.mode"):
        OpenAIPolicyConfig(mode="logits").make()
    with pytest.raises(UserError, match="JITRL_TEST_MISSING_KEY"):
        OpenAIPolicyConfig(api_key_env="JITRL_TEST_MISSING_KEY").make()
    with pytest.raises(UserError, match="mode=score"):
        OpenAIPolicyConfig(mode="choice", tokenizer="smollm2").make().choose(
            Prompt.chat("s", "u"), [f"a{i}" for i in range(21)], np.zeros(21), 0.0, 0
        )


@pytest.mark.slow
def test_a_fresh_client_finds_processed_logprobs_and_the_bias_inside_the_engine(
    vllm_server: VLLMServerInfo,
    hf: HFPolicy,
    prompt: Prompt,
) -> None:
    """A fresh client probes the server's --logprobs-mode by itself (the shared server runs the default,
    processed_logprobs), and sees the bias in the engine's own post-bias log-probs."""
    policy = client(vllm_server, mode="choice")
    bias = np.array(BIAS)
    reference = option_reference(hf, prompt, CANDIDATES)
    result = policy.choose(prompt, CANDIDATES, bias, 0.0, 0)
    assert policy._choice.logprobs_processed()[0] and result.site == "engine"
    np.testing.assert_allclose(result.z, reference, rtol=0, atol=ATOL)
    shift = result.z_prime - result.z  # the engine's post-bias log-odds against its unbiased ones
    np.testing.assert_allclose(shift - shift[0], bias - bias[0], rtol=0, atol=ATOL)
    assert result.index == int(np.argmax(reference + bias))
    warm = policy.choose(prompt, CANDIDATES, bias, 0.7, 3)  # processed logprobs are divided by T: undone exactly
    np.testing.assert_allclose(warm.z, reference, rtol=0, atol=ATOL)
    np.testing.assert_allclose(warm.z_prime, result.z_prime, rtol=0, atol=ATOL)
    # A client told the logprobs are raw cannot see the bias in them: it draws the option itself and says so.
    raw = client(vllm_server, mode="choice", logprobs_mode="raw").choose(prompt, CANDIDATES, bias, 0.0, 0)
    assert raw.site == "client" and raw.index == result.index
    np.testing.assert_allclose(raw.z_prime, result.z_prime, rtol=0, atol=ATOL)

    # Inside the server: its post-bias log-odds between options are the model's plus exactly the bias sent.
    labels = option_labels(len(CANDIDATES))
    option_ids = policy.tokens.single_token_ids(labels)
    sent = server_logit_bias(bias)
    response = httpx.post(
        f"{vllm_server.base_url}/completions",
        json={
            "model": vllm_server.model,
            "prompt": policy.tokens.prompt_ids(option_prompt(prompt, CANDIDATES, labels)),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": 20,
            "logprob_token_ids": option_ids,
            "return_tokens_as_token_ids": True,
            "logit_bias": {str(t): float(b) for t, b in zip(option_ids, sent, strict=True)},
        },
        headers={"Authorization": f"Bearer {vllm_server.api_key}"},
        timeout=60,
    )
    top = response.json()["choices"][0]["logprobs"]["top_logprobs"][0]
    processed = np.array([top[f"token_id:{t}"] for t in option_ids])
    np.testing.assert_allclose(processed - processed[0], reference - reference[0] + sent - sent[0], rtol=0, atol=ATOL)
    assert np.log(np.exp(processed).sum()) == pytest.approx(0.0, abs=1e-4)  # +100 on the options leaves nothing else


@pytest.mark.slow
def test_generate_keeps_to_a_json_schema(vllm_server: VLLMServerInfo) -> None:
    """Proposals, summaries and step scores ask for JSON: the server's structured output keeps the 135M model to it."""
    from jitrl_bench.agents.propose import parse_options, schema

    policy = client(vllm_server)
    asked = Prompt.chat("You play a text adventure.", "Actions: open door, go north, look. Propose 2 with JSON.")
    reply = policy.generate(asked, 200, schema(2))
    options, problem = parse_options(reply.text, 2)
    assert options is not None and len(options) == 2, (problem, reply.text)
    assert all(0 <= o.confidence <= 100 for o in options) and reply.usage.calls == 1
