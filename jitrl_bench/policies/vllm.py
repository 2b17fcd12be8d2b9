"""vLLM in this process as the policy: `score` (summed candidate log-probs) and `choose` (JitRL's bias inside vLLM).

score: each candidate is scored as its own token-id prompt (prompt ids + candidate ids + end-of-turn) with prompt
logprobs; the sum after the prompt is the candidate's log-prob, the same quantity as `HFPolicy.score`.

choose: the candidates become numbered options, vLLM decodes ONE token, and `ChoiceLogitsProcessor` (registered with the
engine) adds the per-request bias Â/β to the option tokens' logits and masks every other token, so the sampled token is
always an option drawn from softmax((z + bias) / T). The bias travels in `SamplingParams.extra_args["jitrl_choice"]`.
z, the options' unbiased log-probs, comes from a request without the bias in the same batch (`logprob_token_ids`);
with `logprobs_mode=processed` (the default) the biased request's post-processor logprobs must show the bias
(engine_evidence.py) for the trace to say "engine"; with raw logprobs the option is drawn on the client ("client").

Model runners: vLLM's V1 model runner takes `vllm.v1.sample.logits_processor.LogitsProcessor`; "model runner V2" (the
default of recent GPU releases) takes a different base class. `model_runner=v1` (the default) pins
VLLM_USE_V2_MODEL_RUNNER=0, which every build supports; `model_runner=v2` sets it to 1 and registers the V2 class. CPU
builds always run V1 (V2 needs Triton's CPU backend).

vLLM starts worker processes: build the policy under `if __name__ == "__main__":` in scripts.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jitrl_bench.checks import Checked, at_least, between, check_tree, one_of
from jitrl_bench.children import watched
from jitrl_bench.contract import (
    BiasedChooser,
    Choice,
    Completer,
    Generated,
    Generator,
    Prompt,
    Scored,
    ServeSpec,
    Usage,
)
from jitrl_bench.errors import UserError
from jitrl_bench.logs import process_output_to_log
from jitrl_bench.policies.choice import check_bias, log_softmax, option_labels, option_prompt, sample_index
from jitrl_bench.policies.engine_evidence import engine_z_prime
from jitrl_bench.policies.server import SETUP_HINT, vllm_env, without_forced_isa
from jitrl_bench.policies.tokens import ChatTokens, check_model, cut_at
from jitrl_bench.timing import LLM, charged

log = logging.getLogger(__name__)

EXTRA_KEY = "jitrl_choice"  # SamplingParams.extra_args[EXTRA_KEY] = {"ids": [...], "bias": [...]}
MODES = ("score", "choice")
MODEL_RUNNERS = ("v1", "v2")
LOGPROBS_MODES = {"raw": "raw_logprobs", "processed": "processed_logprobs"}
DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class VLLMPolicyConfig(Checked):
    """Hydra-friendly settings for `VLLMPolicy` (in-process vLLM)."""

    model: str = "smollm2"
    """A local model folder, a Hugging Face hub id (in the local HF cache when offline), or "smollm2"."""
    mode: str = "score"
    """"score": candidates scored by their summed token log-probs; the agent adds Â/β to z. "choice": the candidates
    as numbered options (at most 20), one decoding step, Â/β added inside vLLM by the logits processor, which
    samples from π*."""
    dtype: str = "float32"
    """Model dtype in vLLM: "float32" (matches HFPolicy float32 to 1e-3), "bfloat16", "float16" or "auto"."""
    max_prompt_tokens: int = 1024
    """Longer prompts are cut from the left, exactly as in HFPolicy."""
    max_model_len: int = 2048
    """vLLM's context length (prompt + candidate); smaller saves KV-cache memory."""
    logprobs_mode: str = "processed"
    """"processed": vLLM returns logprobs after the logits processor, so its output shows the bias it added
    (engine_evidence.py) and the engine's draw is used ("engine"). "raw": vLLM's default, which shows no bias: choose
    draws the option here from the same z' ("client"). z comes from an unbiased request either way."""
    model_runner: str = "v1"
    """"v1" sets VLLM_USE_V2_MODEL_RUNNER=0 (every build); "v2" sets it to 1 (recent GPU builds; needs Triton)."""
    kv_cache_gb: int = 1
    """CPU builds only: VLLM_CPU_KVCACHE_SPACE in GiB (unless already set)."""
    gpu_memory_utilization: float = 0.85
    """GPU builds only: the fraction of GPU memory vLLM may take."""
    enforce_eager: bool = False
    """Skip torch.compile / CUDA graphs: faster start-up, slower steps."""
    seed: int = 0
    """vLLM's engine seed (requests carry their own seeds in `choose`)."""

    def check(self) -> None:
        one_of("mode", self.mode, MODES)
        one_of("dtype", self.dtype, DTYPES)
        one_of("logprobs_mode", self.logprobs_mode, LOGPROBS_MODES)
        one_of("model_runner", self.model_runner, MODEL_RUNNERS)
        at_least("max_prompt_tokens", self.max_prompt_tokens, 16)
        at_least("max_model_len", self.max_model_len, self.max_prompt_tokens + 16, "room for the prompt and a reply")
        at_least("kv_cache_gb", self.kv_cache_gb, 1)
        between("gpu_memory_utilization", self.gpu_memory_utilization, 0.05, 1.0)
        at_least("seed", self.seed, 0)
        check_model("model", self.model)

    def make(self) -> VLLMPolicy:
        return VLLMPolicy(self)

    def serve_spec(self) -> ServeSpec | None:
        return ServeSpec(self.model, self.dtype, self.enforce_eager)


class VLLMPolicy:
    """Implements `Policy` and `BiasedChooser` with an in-process `vllm.LLM`. Calls are serialised with a lock."""

    def __init__(self, config: VLLMPolicyConfig) -> None:
        check_tree(config, "policy")  # the same checks as at compose time, for code that builds it directly
        if importlib.util.find_spec("vllm") is None:
            raise UserError(
                f"policy=vllm needs vLLM in this Python: on CPU run .venv-vllm/bin/jitrl-bench (made by "
                f"{SETUP_HINT}), or use policy=openai"
            )
        self.config = config
        self.tokens = ChatTokens(config.model, config.max_prompt_tokens)
        self.name = self.tokens.name
        self._lock = threading.Lock()

        # vLLM reads these when the engine starts, so setting them after importing vLLM still counts.
        from vllm import LLM
        from vllm.platforms import current_platform

        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1" if config.model_runner == "v2" else "0"
        os.environ.update(vllm_env(current_platform.is_cpu(), config.kv_cache_gb))
        if current_platform.is_cpu():
            without_forced_isa(os.environ)  # the engine core is a process of its own: it starts at the CPU's ISA
        self.hardware = "cpu" if current_platform.is_cpu() else "gpu"

        processor = ChoiceLogitsProcessorV2 if config.model_runner == "v2" else ChoiceLogitsProcessor
        if processor.__mro__[1] is object:
            raise UserError("policy.model_runner=v2 needs a vLLM release with model runner V2; use model_runner=v1")
        gpu = {} if current_platform.is_cpu() else {"gpu_memory_utilization": config.gpu_memory_utilization}
        # vLLM forks its engine core itself: should this process be killed (kill -9, OOM) before it stops the engine,
        # the watcher ends it (no preexec_fn reaches a child another library forks).
        self._watcher = watched()
        try:
            with process_output_to_log():  # the engine and its worker process print a lot: to the log file
                self.llm = LLM(
                    model=self.tokens.source,
                    tokenizer=self.tokens.source,
                    dtype=config.dtype,
                    max_model_len=config.max_model_len,
                    seed=config.seed,
                    enforce_eager=config.enforce_eager,
                    logprobs_mode=LOGPROBS_MODES[config.logprobs_mode],
                    logits_processors=[processor],
                    enable_prefix_caching=True,  # score mode reads each prompt from it (see `score`)
                    **gpu,  # vLLM's own keyword; GPU builds only
                )
        except BaseException:  # a failed start stops what it started, the watcher too
            self.close()
            raise

    # ---- Policy -----------------------------------------------------------------------------------------------------

    @property
    def window(self) -> ChatTokens:
        return self.tokens

    def chooser(self) -> BiasedChooser | None:
        return self if self.config.mode == "choice" else None

    def generator(self) -> Generator | None:
        return self

    def completer(self) -> Completer | None:
        return self

    @charged(LLM)
    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        """mode=score: summed token log-probs of each candidate reply (end-of-turn included).
        mode=choice: the options' log-probs after one decoding step, without bias."""
        if not candidates:
            return Scored(np.zeros(0, dtype=np.float64), Usage())
        if self.config.mode == "choice":
            choice = self.choose(prompt, candidates, np.zeros(len(candidates)), 0.0, 0)
            return Scored(choice.z, choice.usage)
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = self.tokens.prompt_ids(prompt)
        cands = [self.tokens.candidate_ids(c) for c in candidates]
        # vLLM skips its prefix cache for requests that ask for prompt log-probs, so each candidate would pay for the
        # whole prompt (4-15 s for K = 10-30 on CPU). Instead the prompt but its last token runs once alone (its full
        # blocks enter the cache), then the K sequences read it from the cache and compute only the rest: the last
        # prompt token (whose logits give each candidate's first token) and their own tokens (~10x faster, the same
        # numbers). A sequence cached beyond its prompt (an earlier call scored the same candidate) lacks log-probs
        # there and is read again without the cache.
        warm = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
        cached = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0, detokenize=False,
                                skip_reading_prefix_cache=False)  # fmt: skip
        with self._lock:
            if len(ids) > 1:
                self.llm.generate([TokensPrompt(prompt_token_ids=ids[:-1])], warm, use_tqdm=False)
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids + c) for c in cands], cached, use_tqdm=False)
            again = [i for i, out in enumerate(outputs) if (out.num_cached_tokens or 0) >= len(ids)]
            if again:
                plain = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0, detokenize=False)
                redone = self.llm.generate([TokensPrompt(prompt_token_ids=ids + cands[i]) for i in again], plain,
                                           use_tqdm=False)  # fmt: skip
                outputs = [*outputs]
                for i, out in zip(again, redone, strict=True):
                    outputs[i] = out
        scores = np.zeros(len(cands), dtype=np.float64)
        for i, (cand, out) in enumerate(zip(cands, outputs, strict=True)):
            per_token = out.prompt_logprobs[len(ids) :]
            scores[i] = sum(step[token].logprob for step, token in zip(per_token, cand, strict=True))
        redone_tokens = sum(len(ids) + len(cands[i]) for i in again)
        usage = Usage(1 + len(cands) + len(again), len(ids) + sum(map(len, cands)) + redone_tokens, 1 + len(cands))
        return Scored(scores, usage)

    @charged(LLM)
    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        """Greedy reply, stopped at end-of-turn; with a `schema`, vLLM's structured output keeps it to that JSON."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import StructuredOutputsParams

        ids = self.tokens.prompt_ids(prompt)
        structured = StructuredOutputsParams(json=dict(schema)) if schema is not None else None
        params = SamplingParams(
            max_tokens=max_new_tokens,
            temperature=0.0,
            stop_token_ids=[self.tokens.end_of_turn_id],
            structured_outputs=structured,
        )
        with self._lock:
            (out,) = self.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
            new = list(out.outputs[0].token_ids)
        return Generated(self.tokens.decode(new).strip(), Usage(1, len(ids), len(new)))

    @charged(LLM)
    def complete(self, text: str, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> Generated:
        """Greedy continuation of raw text (no chat template), stopped at end-of-turn, end-of-text or `stop`."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = self.tokens.raw_ids(text)
        params = SamplingParams(
            max_tokens=max_new_tokens, temperature=0.0, stop_token_ids=self.tokens.stop_ids(), stop=list(stop) or None
        )
        with self._lock:
            (out,) = self.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
            new = list(out.outputs[0].token_ids)
        return Generated(cut_at(self.tokens.decode(new), stop).strip(), Usage(1, len(ids), len(new)))

    # ---- BiasedChooser ----------------------------------------------------------------------------------------------

    @charged(LLM)
    def choose(
        self, prompt: Prompt, candidates: Sequence[str], bias: np.ndarray, temperature: float, seed: int
    ) -> Choice:
        """One decoding step over the numbered candidates with `bias` added to the option logits inside vLLM."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        labels = option_labels(len(candidates))
        bias = check_bias(bias, len(candidates))
        option_ids = self.tokens.single_token_ids(labels)
        ids = self.tokens.prompt_ids(option_prompt(prompt, candidates, labels))
        unbiased = SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=len(option_ids), logprob_token_ids=option_ids, detokenize=False
        )  # vLLM requires logprobs == len(logprob_token_ids)
        requests = [unbiased]
        if self.config.logprobs_mode == "processed":  # its output can show the bias: the engine samples
            sent = SamplingParams(
                max_tokens=1,
                temperature=max(float(temperature), 0.0),
                seed=seed,
                logprobs=len(option_ids),
                logprob_token_ids=option_ids,
                extra_args={EXTRA_KEY: {"ids": option_ids, "bias": [float(b) for b in bias]}},
            )
            requests.append(sent)
        with self._lock:
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=ids)] * len(requests), requests, use_tqdm=False)
        usage = Usage(len(requests), len(ids) * len(requests), len(requests))
        steps = [out.outputs[0].logprobs[0] for out in outs]
        z = log_softmax(np.array([steps[0][token].logprob for token in option_ids], dtype=np.float64))
        if len(outs) == 1:  # raw logprobs show no bias: draw here from z' (the same distribution), and say so
            z_prime = log_softmax(z + bias)
            return Choice(sample_index(z_prime, temperature, seed), z, z_prime, usage, site="client")
        processed = [steps[1][token].logprob if token in steps[1] else None for token in option_ids]
        z_prime = engine_z_prime(processed, z, bias, bias, temperature, "vLLM's ChoiceLogitsProcessor")
        sampled = outs[1].outputs[0].token_ids[0]
        if sampled not in option_ids:  # the processor masks every other token, so this is a wiring error
            raise RuntimeError(f"vLLM sampled token {sampled}, not an option; is ChoiceLogitsProcessor registered?")
        return Choice(option_ids.index(sampled), z, z_prime, usage, site="engine")

    def close(self) -> None:
        """Stop vLLM's engine processes (also happens at interpreter exit)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            engine_core = getattr(llm.llm_engine, "engine_core", None)
            if engine_core is not None:
                engine_core.shutdown()
            del llm
            gc.collect()
        watcher: subprocess.Popen[bytes] | None = self.__dict__.pop("_watcher", None)
        if watcher is not None:  # the engine is stopped: nothing left for it to end
            watcher.kill()
            watcher.wait()


# ---- the logits processors (defined only where vLLM is installed) -------------------------------------------------


def parse_choice_args(params: Any) -> tuple[list[int], list[float]] | None:
    """The (option ids, bias) a request carries in extra_args, or None; ValueError when malformed."""
    args = (params.extra_args or {}).get(EXTRA_KEY)
    if args is None:
        return None
    try:
        ids = [int(i) for i in args["ids"]]
        bias = [float(b) for b in args["bias"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"extra_args[{EXTRA_KEY!r}] must be {{'ids': [int], 'bias': [float]}}: {e}") from e
    if not ids or len(ids) != len(bias) or len(set(ids)) != len(ids):
        raise ValueError(f"extra_args[{EXTRA_KEY!r}] needs as many distinct ids as bias values")
    if not all(np.isfinite(bias)):
        raise ValueError(f"extra_args[{EXTRA_KEY!r}] bias values must be finite")
    return ids, bias


if TYPE_CHECKING or importlib.util.find_spec("vllm") is not None:
    import torch

    def _choice_state(params: Any, device: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        parsed = parse_choice_args(params)
        if parsed is None:
            return None
        ids, bias = parsed
        return torch.tensor(ids, dtype=torch.long, device=device), torch.tensor(
            bias, dtype=torch.float32, device=device
        )

    def _mask_and_bias(logits: torch.Tensor, row: int, ids: torch.Tensor, bias: torch.Tensor) -> None:
        """Row `row` keeps only the option tokens, each with its bias added."""
        kept = logits[row, ids].float() + bias
        logits[row] = float("-inf")
        logits[row, ids] = kept.to(logits.dtype)

    from vllm.v1.sample.logits_processor import BatchUpdate
    from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor
    from vllm.v1.sample.logits_processor.builtin import process_dict_updates

    class ChoiceLogitsProcessor(V1LogitsProcessor):  # type: ignore[misc]
        """V1 model runner: per-request option mask + bias, keyed by the request's row in the persistent batch."""

        def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
            self.device = device
            self.rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        @classmethod
        def validate_params(cls, sampling_params: Any) -> None:
            parse_choice_args(sampling_params)

        def is_argmax_invariant(self) -> bool:
            return False  # it changes which token wins, so it must also run for greedy requests

        def update_state(self, batch_update: BatchUpdate | None) -> None:
            process_dict_updates(self.rows, batch_update, lambda params, _p, _o: _choice_state(params, self.device))

        def apply(self, logits: torch.Tensor) -> torch.Tensor:
            for row, (ids, bias) in self.rows.items():
                _mask_and_bias(logits, row, ids, bias)
            return logits

    try:  # vLLM releases before model runner V2 have no such class; V1 still works there
        from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as V2LogitsProcessor
    except ImportError:  # pragma: no cover - depends on the installed vLLM
        V2LogitsProcessor = object

    class ChoiceLogitsProcessorV2(V2LogitsProcessor):  # type: ignore[misc]
        """Model runner V2: the same mask + bias, keyed by the request's persistent slot."""

        def __init__(self, vllm_config: Any, req_states: Any) -> None:
            self.device = req_states.device
            self.slots: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        @classmethod
        def validate_params(cls, sampling_params: Any) -> None:
            parse_choice_args(sampling_params)

        def add_request(self, req_idx: int, sampling_params: Any) -> bool:
            # Slots are recycled: always overwrite what a previous request left there.
            state = _choice_state(sampling_params, self.device)
            if state is None:
                self.slots.pop(req_idx, None)
                return False
            self.slots[req_idx] = state
            return True

        def apply(self, logits: torch.Tensor, ctx: Any) -> torch.Tensor:
            if not self.slots:
                return logits
            for row, slot in enumerate(ctx.expanded_idx_mapping.tolist()):
                state = self.slots.get(slot)
                if state is not None:
                    _mask_and_bias(logits, row, *state)
            return logits
