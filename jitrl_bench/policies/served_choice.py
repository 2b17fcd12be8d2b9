"""policy.mode=choice on an OpenAI-compatible server: the candidates as numbered options, read in one decoding step.

z, the options' log-probs without a bias, comes from vLLM's `logprob_token_ids` (else top_logprobs, else echo scoring
of the options that were not among them). A server whose logprobs are processed (`--logprobs-mode
processed_logprobs`, what `jitrl-bench serve` and server=auto start) then samples the option under `logit_bias`, and
its processed log-probs must show that bias (engine_evidence.py) for the trace to say "engine"; with raw logprobs
(vLLM's own default) the option is drawn here from z' ("client"). Kept apart from the HTTP client (openai.py) because
this is the protocol of the bias seam, not of transport.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from jitrl_bench.contract import Choice, Prompt, Scored, Usage
from jitrl_bench.errors import UserError
from jitrl_bench.net.json_client import choices
from jitrl_bench.policies.choice import log_softmax, option_labels, option_prompt, sample_index, server_logit_bias
from jitrl_bench.policies.engine_evidence import engine_z_prime
from jitrl_bench.policies.tokens import ChatTokens

log = logging.getLogger(__name__)

TOKEN_ID = re.compile(r"^token_id:(\d+)$")
# vLLM sampling fields that keep the one-step choice exact (no top-k/top-p cut, no penalties from the model's
# generation_config); `return_tokens_as_token_ids` names logprob entries by id instead of by text.
VLLM_NEUTRAL = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "return_tokens_as_token_ids": True}


class PostJSON(Protocol):
    def __call__(self, path: str, payload: dict[str, Any], expected: Usage) -> tuple[dict[str, Any], Usage]:
        """The server's JSON reply to `payload` at `path`, and what the call cost."""
        ...


class ServedChoice:
    """One client's choice mode: it probes once whether the server's logprobs include the bias, then reads options."""

    def __init__(
        self,
        post: PostJSON,
        tokens: Callable[[], ChatTokens],
        model: str,
        base_url: str,
        vllm_extras: bool,
        logprobs_mode: str,
    ) -> None:
        self._post, self._tokens = post, tokens
        self.model, self.base_url, self.vllm_extras = model, base_url, vllm_extras
        self._lock = threading.Lock()
        self._processed: bool | None = {"raw": False, "processed": True}.get(logprobs_mode)

    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        """The options' log-probs after the prompt, without a bias."""
        labels = option_labels(len(candidates))
        tokens = self._tokens()
        ids = tokens.prompt_ids(option_prompt(prompt, candidates, labels))
        z, usage = self.option_z(ids, tokens.single_token_ids(labels))
        return Scored(z, usage)

    def choose(
        self, prompt: Prompt, candidates: Sequence[str], bias: np.ndarray, temperature: float, seed: int
    ) -> Choice:
        """z from the server without a bias; then the draw under `logit_bias` in the engine (processed logprobs,
        which must show the bias, else one UserError) or here from z' (raw logprobs show nothing)."""
        k = len(candidates)
        labels = option_labels(k)
        tokens = self._tokens()
        option_ids = tokens.single_token_ids(labels)
        ids = tokens.prompt_ids(option_prompt(prompt, candidates, labels))
        processed, usage = self.logprobs_processed()
        z, used = self.option_z(ids, option_ids)
        usage += used
        if not processed:
            z_prime = log_softmax(z + bias)
            return Choice(sample_index(z_prime, temperature, seed), z, z_prime, usage, site="client")
        sent = server_logit_bias(bias)
        body, used = self._post(
            "/completions",
            {
                "model": self.model,
                "prompt": ids,
                "max_tokens": 1,
                "temperature": max(float(temperature), 0.0),
                "top_p": 1.0,
                "seed": int(seed),
                "logprobs": 20,
                "logit_bias": {str(t): float(b) for t, b in zip(option_ids, sent, strict=True)},
                **self._extras({**VLLM_NEUTRAL, "logprob_token_ids": option_ids}),
            },
            Usage(1, len(ids), 1),
        )
        usage += used
        (choice,) = choices(body, 1, self.base_url)
        logprobs = choice.get("logprobs") or {}
        sampled = self._token_id(((logprobs.get("tokens") or [None])[0]), option_ids)
        found = self._option_logprobs(((logprobs.get("top_logprobs") or [None])[0]) or {}, option_ids)
        z_prime = engine_z_prime(found, z, sent, bias, temperature, f"server at {self.base_url}")
        if sampled not in option_ids:
            raise UserError(
                f"server at {self.base_url} sampled token {sampled}, not one of the options it was told to favour by "
                "about +100: it did not apply logit_bias; choice mode needs a server that does, else use "
                "policy.mode=score"
            )
        return Choice(option_ids.index(sampled), z, z_prime, usage, site="engine")

    def option_z(self, ids: list[int], option_ids: list[int]) -> tuple[np.ndarray, Usage]:
        """z: the options' log-probs after the prompt, without a bias, renormalised over them (vLLM's
        `logprob_token_ids`, else top_logprobs, else echo scoring of the options that were not among them)."""
        body, usage = self._post(
            "/completions",
            {
                "model": self.model,
                "prompt": ids,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 20,
                **self._extras({**VLLM_NEUTRAL, "logprob_token_ids": option_ids}),
            },
            Usage(1, len(ids), 1),
        )
        (choice,) = choices(body, 1, self.base_url)
        found = self._option_logprobs((((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0]) or {},
                                      option_ids)  # fmt: skip
        if all(v is not None for v in found):
            return log_softmax(np.array(found, dtype=np.float64)), usage
        echoed, used = self._echo_option_logprobs(ids, option_ids)
        return log_softmax(echoed), usage + used

    def _extras(self, fields: dict[str, Any]) -> dict[str, Any]:
        return fields if self.vllm_extras else {}

    def _token_id(self, token: Any, option_ids: list[int]) -> int | None:
        """A logprob entry's token id: "token_id:N" (vLLM), else matched against the options' texts."""
        if not isinstance(token, str):
            return None
        match = TOKEN_ID.match(token)
        if match:
            return int(match.group(1))
        tokens = self._tokens()
        for option in option_ids:
            if tokens.tokenizer.convert_ids_to_tokens(option) == token or tokens.decode([option]) == token:
                return option
        return None

    def _option_logprobs(self, top: dict[str, float], option_ids: list[int]) -> list[float | None]:
        by_id = {self._token_id(token, option_ids): float(value) for token, value in top.items()}
        return [by_id.get(option) for option in option_ids]

    def _echo_option_logprobs(self, ids: list[int], option_ids: list[int]) -> tuple[np.ndarray, Usage]:
        """log p(option | prompt) for every option, by echo scoring (prompt ids + option id)."""
        body, usage = self._post(
            "/completions",
            {
                "model": self.model,
                "prompt": [[*ids, option] for option in option_ids],
                "max_tokens": 0,
                "echo": True,
                "logprobs": 0,
                "temperature": 0.0,
            },
            Usage(1, (len(ids) + 1) * len(option_ids), 0),
        )
        values = []
        for choice in choices(body, len(option_ids), self.base_url):
            echoed = (choice.get("logprobs") or {}).get("token_logprobs") or []
            if len(echoed) < len(ids) + 1 or echoed[len(ids)] is None:
                raise UserError(
                    f"server at {self.base_url} returned neither the option log-probs nor echoed prompt logprobs; "
                    "choice mode needs a vLLM-compatible server, else use policy.mode=verbalized"
                )
            values.append(float(echoed[len(ids)]))
        return np.array(values, dtype=np.float64), usage

    def logprobs_processed(self) -> tuple[bool, Usage]:
        """Whether the server's logprobs include logit_bias; probed once with a +100 bias on the end-of-turn token:
        processed logprobs give it ~0, raw ones its small unbiased probability. The probe's cost is returned (it
        is counted in the decision that needed it)."""
        with self._lock:
            known = self._processed
        if known is not None:
            return known, Usage()
        tokens = self._tokens()
        eot = tokens.end_of_turn_id
        ids = tokens.prompt_ids(Prompt.chat("You are a helpful assistant.", "Say hello to Ada."))
        body, usage = self._post(
            "/completions",
            {
                "model": self.model,
                "prompt": ids,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 1,
                "logit_bias": {str(eot): 100.0},
                **self._extras({"return_tokens_as_token_ids": True}),
            },
            Usage(1, len(ids), 1),
        )
        (choice,) = choices(body, 1, self.base_url)
        values = (choice.get("logprobs") or {}).get("token_logprobs") or [None]
        if values[0] is None:
            raise UserError(f"server at {self.base_url} returns no logprobs; choice mode needs them")
        processed = float(values[0]) > -1e-3
        log.info("server at %s returns %s logprobs", self.base_url, "processed" if processed else "raw")
        with self._lock:
            self._processed = processed
        return processed, usage
