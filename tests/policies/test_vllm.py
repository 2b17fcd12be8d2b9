"""VLLMPolicy (in-process vLLM) and its logits processor, checked against HFPolicy float32.

`policy=vllm` runs only where vLLM is installed, so the vLLM side runs as one subprocess under .venv-vllm (the script
below, with its `if __name__ == "__main__":` guard: vLLM starts worker processes) and writes its measurements to JSON;
the assertions and the transformers reference run here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from jitrl_bench.agents.propose import parse_options
from jitrl_bench.contract import Prompt
from jitrl_bench.paths import SOURCE_ROOT
from jitrl_bench.policies.hf import HFPolicy
from jitrl_bench.policies.vllm import VLLMPolicyConfig, parse_choice_args
from tests.conftest_vllm import BIAS, CANDIDATES, OBSERVATION, SYSTEM, option_reference, require_vllm_venv

ATOL = 1e-3
"""vLLM's float32 scores against transformers' float32 on the same weights: two engines (vLLM's own attention kernel,
fused ops, its float32 log-softmax) doing the same sums in other orders, so rounding alone, as tests/policies/
tolerance.py derives it: 1e-3 nats over these candidates of at most 8 tokens is ~1,000 float32 epsilons a token, that
file's budget. A wrong mask, position or bias moves the worst-hit candidate by over 1 nat (tolerance.py)."""

RAW = "Task Instruction: name a colour\n\nRound 0\n\nThe sky is"
"""Raw text for the completion path (no chat template)."""

SCRIPT = r'''
import json
import sys
import time

import numpy as np

RAW = "Task Instruction: name a colour\n\nRound 0\n\nThe sky is"


def measure(mode, prompt, candidates, bias):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from jitrl_bench.policies.choice import option_labels, option_prompt
    from jitrl_bench.policies.vllm import EXTRA_KEY, VLLMPolicyConfig

    out = {}
    start = time.perf_counter()
    # The processed engine is the default users get (compiled); the raw one runs eager, which starts in half the time.
    policy = VLLMPolicyConfig(model="smollm2", dtype="float32", logprobs_mode=mode, enforce_eager=mode == "raw").make()
    out["startup_s"] = time.perf_counter() - start
    warm_up = type(prompt).chat(prompt.messages[0].content, "Warm-up. " + prompt.messages[1].content)
    policy.score(warm_up, candidates)  # the engine's first calls are slow; this prompt differs from its first token
    start = time.perf_counter()
    first = policy.score(prompt, candidates)  # a new prompt: read once, then each candidate from the prefix cache
    out["score_s"] = time.perf_counter() - start
    out["score_first"] = first.z.tolist()
    out["score_usage"] = [first.usage.calls, first.usage.prompt_tokens, first.usage.completion_tokens]
    scored = policy.score(prompt, candidates)  # all cached now, candidates included: those are read again uncached
    out["score"] = scored.z.tolist()
    out["prompt_ids"] = len(policy.tokens.prompt_ids(prompt))
    out["candidate_ids"] = [len(policy.tokens.candidate_ids(c)) for c in candidates]
    zero = np.zeros(len(candidates))
    start = time.perf_counter()
    unbiased = policy.choose(prompt, candidates, zero, 0.0, 0)
    out["choice_s"] = time.perf_counter() - start
    biased = policy.choose(prompt, candidates, bias, 0.0, 0)
    out["unbiased"] = {"index": unbiased.index, "z": unbiased.z.tolist(), "z_prime": unbiased.z_prime.tolist(),
                       "site": unbiased.site, "calls": unbiased.usage.calls}
    out["biased"] = {"index": biased.index, "z": biased.z.tolist(), "z_prime": biased.z_prime.tolist(),
                     "site": biased.site}
    warm = policy.choose(prompt, candidates, bias, 0.7, 3)
    out["warm"] = {"z": warm.z.tolist(), "z_prime": warm.z_prime.tolist()}
    out["draws"] = [policy.choose(prompt, candidates, bias, 1.0, seed).index for seed in range(12)]
    out["redraws"] = [policy.choose(prompt, candidates, bias, 1.0, seed).index for seed in range(4)]
    strong = np.zeros(len(candidates))
    strong[7] = 15.0
    out["strong"] = [policy.choose(prompt, candidates, strong, 1.0, seed).index for seed in range(5)]
    out["choice_mode_score"] = None
    if mode == "processed":
        # What the engine itself returns after the logits processor: the options' post-bias log-probs.
        labels = option_labels(len(candidates))
        ids = policy.tokens.single_token_ids(labels)
        params = SamplingParams(
            max_tokens=1,
            temperature=0.0,
            logprobs=len(ids),
            logprob_token_ids=ids,
            extra_args={EXTRA_KEY: {"ids": ids, "bias": [float(b) for b in bias]}},
        )
        prompt_ids = policy.tokens.prompt_ids(option_prompt(prompt, candidates, labels))
        (result,) = policy.llm.generate([TokensPrompt(prompt_token_ids=prompt_ids)], params, use_tqdm=False)
        step = result.outputs[0].logprobs[0]
        out["engine_processed"] = [step[t].logprob for t in ids]
    generated = policy.generate(prompt, 12)
    out["generate"] = generated.text
    from jitrl_bench.agents.propose import schema

    # vLLM's structured output keeps it to the schema; the same guided decoding whatever the logprobs mode, so it is
    # asked of one engine (the default one): 8 s a call on one core
    out["proposal"] = policy.generate(prompt, 200, schema(3)).text if mode == "processed" else None
    out["generate_usage"] = [generated.usage.calls, generated.usage.prompt_tokens, generated.usage.completion_tokens]
    completed = policy.complete(RAW, 16, stop=(".",))  # raw text, no chat template (the WebRL agent's path)
    out["complete"] = [completed.text, completed.usage.prompt_tokens, completed.usage.completion_tokens]
    policy.close()
    return out


def v2_processor():
    """Model runner V2 is GPU-only in this build; check the V2 class on its own, with vLLM's own context type."""
    import types

    import torch
    from vllm import SamplingParams
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext

    from jitrl_bench.policies.vllm import EXTRA_KEY, ChoiceLogitsProcessorV2

    processor = ChoiceLogitsProcessorV2(None, types.SimpleNamespace(device=torch.device("cpu")))
    used = processor.add_request(3, SamplingParams(extra_args={EXTRA_KEY: {"ids": [5, 7], "bias": [1.0, -2.0]}}))
    declined = processor.add_request(5, SamplingParams())
    logits = torch.zeros(2, 10)
    logits[:, 5] = 0.5
    mapping = torch.tensor([5, 3])
    ctx = LogitsContext(
        expanded_idx_mapping=mapping,
        idx_mapping=mapping,
        idx_mapping_np=mapping.numpy(),
        expanded_local_pos=torch.zeros(2, dtype=torch.long),
        input_ids=torch.zeros(2, dtype=torch.long),
        pos=torch.zeros(2, dtype=torch.long),
        seq_lens_upper_bound_np=np.ones(2, dtype=np.int32),
    )
    out = processor.apply(logits, ctx)
    reused = processor.add_request(3, SamplingParams())  # a recycled slot must drop the old request's state
    return {"used": used, "declined": declined, "reused": reused, "rows": out.tolist(), "left": sorted(processor.slots)}


def main():
    from jitrl_bench.contract import Prompt

    spec = json.loads(open(sys.argv[1]).read())
    prompt = Prompt.chat(spec["system"], spec["user"])
    bias = np.array(spec["bias"])
    results = {mode: measure(mode, prompt, spec["candidates"], bias) for mode in ("raw", "processed")}
    results["v2"] = v2_processor()
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the script once under .venv-vllm (two engines: raw and processed logprobs) and load what it measured."""
    python = require_vllm_venv()
    folder = tmp_path_factory.mktemp("vllm")
    (folder / "check.py").write_text(SCRIPT)
    spec = {"system": SYSTEM, "user": OBSERVATION, "candidates": CANDIDATES, "bias": BIAS}
    (folder / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [str(python), str(folder / "check.py"), str(folder / "spec.json"), str(folder / "out.json")],
        cwd=SOURCE_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        pytest.fail(f"the in-process vLLM check failed (exit {done.returncode}):\n{output}")
    results: dict[str, Any] = json.loads((folder / "out.json").read_text())
    for mode in ("raw", "processed"):
        r = results[mode]
        print(
            f"\nin-process vLLM ({mode} logprobs): start-up {r['startup_s']:.1f} s, score K={len(CANDIDATES)} "
            f"{r['score_s']:.3f} s, choice {r['choice_s']:.3f} s",
            file=sys.stderr,
        )
    return results


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_score_matches_transformers(engine: dict[str, Any], hf: HFPolicy, prompt: Prompt, mode: str) -> None:
    reference = hf.score(prompt, CANDIDATES).z
    np.testing.assert_allclose(engine[mode]["score_first"], reference, rtol=0, atol=ATOL)
    np.testing.assert_allclose(engine[mode]["score"], reference, rtol=0, atol=ATOL)
    # the prompt is computed once (it then serves every candidate from vLLM's prefix cache), not once per candidate
    prompt_ids, candidate_ids = engine[mode]["prompt_ids"], engine[mode]["candidate_ids"]
    assert engine[mode]["score_usage"] == [1 + len(CANDIDATES), prompt_ids + sum(candidate_ids), 1 + len(CANDIDATES)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_choice_without_bias_is_the_models_own(engine: dict[str, Any], hf: HFPolicy, prompt: Prompt, mode: str) -> None:
    reference = option_reference(hf, prompt, CANDIDATES)
    unbiased = engine[mode]["unbiased"]
    np.testing.assert_allclose(unbiased["z"], reference, rtol=0, atol=ATOL)
    np.testing.assert_allclose(unbiased["z_prime"], unbiased["z"], rtol=0, atol=ATOL)  # two engine passes
    assert unbiased["index"] == int(np.argmax(reference))
    # processed logprobs show the processor's bias: the engine's draw (an unbiased and a biased request, one batch);
    # raw ones show nothing, so the option is drawn on the client from the same z'
    assert (unbiased["site"], unbiased["calls"]) == (("engine", 2) if mode == "processed" else ("client", 1))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_choice_bias_shifts_log_odds_exactly(engine: dict[str, Any], hf: HFPolicy, prompt: Prompt, mode: str) -> None:
    reference = option_reference(hf, prompt, CANDIDATES)
    bias = np.array(BIAS)
    biased = engine[mode]["biased"]
    np.testing.assert_allclose(biased["z"], reference, rtol=0, atol=ATOL)
    # processed: z' is the engine's own post-processor log-probs against its unbiased z (site "engine"), so a
    # processor that returns the logits unchanged fails here (tried by hand: choose raises first, engine_evidence.py)
    assert biased["site"] == ("engine" if mode == "processed" else "client")
    shift = np.array(biased["z_prime"]) - np.array(biased["z"])
    np.testing.assert_allclose(shift - shift[0], bias - bias[0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(engine[mode]["warm"]["z"], biased["z"], rtol=0, atol=ATOL)  # T does not leak into z
    np.testing.assert_allclose(engine[mode]["warm"]["z_prime"], biased["z_prime"], rtol=0, atol=ATOL)
    # vLLM's own greedy token follows the biased logits, away from the model's favourite.
    assert biased["index"] == int(np.argmax(reference + bias)) != int(np.argmax(reference))
    draws = engine[mode]["draws"]
    assert all(0 <= d < len(CANDIDATES) for d in draws) and len(set(draws)) > 1  # the mask keeps every draw an option
    assert draws[:4] == engine[mode]["redraws"]  # seeded
    assert set(engine[mode]["strong"]) == {7}


@pytest.mark.slow
def test_processor_adds_exactly_the_bias_inside_vllm(engine: dict[str, Any], hf: HFPolicy, prompt: Prompt) -> None:
    """The engine's post-processor log-probs: the model's log-odds plus exactly the bias, all mass on the options."""
    reference = option_reference(hf, prompt, CANDIDATES)
    processed = np.array(engine["processed"]["engine_processed"])
    bias = np.array(BIAS)
    np.testing.assert_allclose(processed - processed[0], reference - reference[0] + bias - bias[0], rtol=0, atol=ATOL)
    assert np.log(np.exp(processed).sum()) == pytest.approx(0.0, abs=1e-4)  # every other token is masked


@pytest.mark.slow
def test_generate_and_accounting(engine: dict[str, Any]) -> None:
    for mode in ("raw", "processed"):
        assert engine[mode]["generate"].strip() and "<|" not in engine[mode]["generate"]
        calls, prompt_tokens, completion_tokens = engine[mode]["generate_usage"]
        assert calls == 1 and prompt_tokens == engine[mode]["prompt_ids"] and 1 <= completion_tokens <= 12
    options, problem = parse_options(engine["processed"]["proposal"], 3)  # the paper's proposals, as JSON
    assert options is not None and len(options) == 3, (problem, engine["processed"]["proposal"])


@pytest.mark.slow
def test_raw_completion(engine: dict[str, Any], hf: HFPolicy) -> None:
    for mode in ("raw", "processed"):
        text, prompt_tokens, completion_tokens = engine[mode]["complete"]
        assert text and "." not in text and "<|" not in text  # stopped at the stop string, which is not kept
        assert prompt_tokens == len(hf.tokens.raw_ids(RAW)) and 1 <= completion_tokens <= 16


@pytest.mark.slow
def test_model_runner_v2_processor(engine: dict[str, Any]) -> None:
    v2 = engine["v2"]
    assert v2["used"] is True and v2["declined"] is False and v2["reused"] is False and v2["left"] == []
    row_untouched, row_choice = v2["rows"]
    assert row_untouched[5] == 0.5 and row_untouched[0] == 0.0  # the declined request's row is left alone
    assert row_choice[5] == pytest.approx(1.5) and row_choice[7] == pytest.approx(-2.0)
    assert all(v == float("-inf") for i, v in enumerate(row_choice) if i not in (5, 7))


def test_choice_args_are_validated() -> None:
    class Params:
        def __init__(self, extra: Any) -> None:
            self.extra_args = extra

    assert parse_choice_args(Params(None)) is None
    assert parse_choice_args(Params({"jitrl_choice": {"ids": [3, 4], "bias": [0.5, -1]}})) == ([3, 4], [0.5, -1.0])
    for bad in ({"ids": [3], "bias": []}, {"ids": [3, 3], "bias": [0, 0]}, {"ids": [3]}, {"ids": [1], "bias": ["x"]}):
        with pytest.raises(ValueError):
            parse_choice_args(Params({"jitrl_choice": bad}))


def test_without_vllm_installed_is_a_user_error() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in this interpreter")
    from jitrl_bench.errors import UserError

    with pytest.raises(UserError, match="venv-vllm"):
        VLLMPolicyConfig().make()
