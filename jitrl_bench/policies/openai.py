"""Any OpenAI-compatible server as the policy: `vllm serve` first, also OpenAI or OpenRouter.

Modes (policy.mode):
- score: one /v1/completions call whose prompt is a list of token-id lists (prompt ids + candidate ids + end-of-turn),
  with echo and prompt logprobs; a candidate's log-prob is the sum of its echoed token log-probs. Needs a server that
  takes token-id prompts and echoes logprobs (vLLM) and the served model's tokenizer (policy.tokenizer).
- choice: the candidates as numbered options, ONE decoding step with `logit_bias` on the option tokens, the bias
  applied in the engine where the server's own log-probs show it (served_choice.py, which reads the options).
- verbalized: for chat-only APIs: the model rates each option 0-100 in JSON; z_i = log((c_i + 1) / Σ (c_j + 1)).

The API key is read from the environment variable NAMED by `api_key_env`; it is never stored or printed. Calls are
thread-safe (several episodes share one client), limited to `max_concurrency` at once, bounded by one deadline per try
(`timeout_s`) and a reply size cap (`max_reply_mb`), retried with exponential backoff on connection errors, timeouts,
bad replies, 429 and 5xx, and end in one UserError naming the URL when the server stays unreachable. A server that
server=auto starts gets a random API key, handed to the client here and never written anywhere.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jitrl_bench.checks import Checked, above, at_least, check_tree, env_var_name, http_url, one_of
from jitrl_bench.contract import (
    BiasedChooser,
    Choice,
    Completer,
    ContextWindow,
    Generated,
    Generator,
    Prompt,
    Scored,
    ServeSpec,
    Usage,
)
from jitrl_bench.errors import InfraError, UserError
from jitrl_bench.net.json_client import JSONClient, choices, message_text
from jitrl_bench.policies.choice import (
    check_bias,
    log_softmax,
    sample_index,
)
from jitrl_bench.policies.served_choice import ServedChoice
from jitrl_bench.policies.server import VLLMServer
from jitrl_bench.policies.tokens import ApproxWindow, ChatTokens, check_model, cut_at
from jitrl_bench.policies.verbalized import confidence_request, parse_confidences
from jitrl_bench.timing import LLM, charged

log = logging.getLogger(__name__)

MODES = ("score", "choice", "verbalized")
LOGPROBS_MODES = ("auto", "raw", "processed")
SERVER_CHOICES = ("none", "auto")
RESPONSE_FORMATS = ("json_schema", "json_object", "none")


@dataclass
class OpenAIPolicyConfig(Checked):
    """Hydra-friendly settings for `OpenAIPolicy`."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """The server's OpenAI base URL, ending in /v1 (`jitrl-bench serve` prints it). Ignored with server=auto."""
    server: str = "none"
    """"none": use the server at base_url. "auto": start a local vLLM server for `tokenizer` (a model folder, hub id
    or "smollm2"), served as `model`, when the policy is made; `close()` (or exit) stops it."""
    enforce_eager: bool = False
    """server=auto (and `jitrl-bench serve`): start vLLM with --enforce-eager, without torch.compile: on a CPU the
    server is up in about half the time (37 s against 74 s for SmolLM2 on 2 cores); each step may run slower."""
    model: str = "SmolLM2-135M-Instruct"
    """The model name the server serves (vLLM: --served-model-name)."""
    mode: str = "score"
    """"score" (token-id prompts with echo; vLLM; the agent adds Â/β to z), "choice" (one step over numbered options
    with Â/β sent as logit_bias: the server adds it and samples from π*; vLLM) or "verbalized" (JSON confidences;
    any chat API; Â/β added by the agent)."""
    tokenizer: str | None = None
    """The served model's tokenizer for token-id prompts (score, choice): a local folder, a hub id in the local HF
    cache, or "smollm2". None: use `model` when it names one of those."""
    api_key_env: str | None = None
    """The NAME of the environment variable that holds the API key (e.g. OPENAI_API_KEY); None: no key (local vLLM)."""
    timeout_s: float = 120.0
    """Deadline of each try of a request, from connecting to the reply's last byte (a reply trickled byte by byte
    cannot outlast it); a run waits at most about timeout_s × (max_retries + 1) plus backoff for one call."""
    max_retries: int = 4
    """Retries after the first try, on connection errors, timeouts, 429 and 5xx."""
    backoff_s: float = 0.5
    """First retry delay; doubles each retry (capped at 10 s), with jitter."""
    max_concurrency: int = 4
    """At most this many requests in flight from this client, across threads."""
    max_reply_mb: float = 64.0
    """A reply larger than this (MiB) fails the try, as a bad reply does (a score reply with echoed logprobs takes
    about 0.1 KiB per prompt token and candidate)."""
    max_prompt_tokens: int = 1024
    """The prompt budget prompt layouts fit to (token-id prompts still longer are cut from the left)."""
    logprobs_mode: str = "auto"
    """Whether the server's logprobs include logit_bias: "processed" (vLLM with --logprobs-mode processed_logprobs,
    as `jitrl-bench serve` starts it: choice mode checks the bias in them and records "engine"), "raw" (vLLM's own
    default: they show no bias, so choice mode draws the option here, "client") or "auto" (probe once)."""
    vllm_extras: bool = True
    """Send vLLM's extra request fields (logprob_token_ids, top_k, min_p, ...); false for servers that reject them."""
    verbalized_max_tokens: int = 256
    """Reply budget for the JSON of confidences."""
    response_format: str = "json_schema"
    """verbalized: "json_schema" (a schema with one 0-100 integer per option; OpenAI, vLLM), "json_object" (any
    JSON) or "none" (servers without structured output; the JSON is then found in the text)."""

    def check(self) -> None:
        http_url("base_url", self.base_url)
        one_of("server", self.server, SERVER_CHOICES)
        one_of("mode", self.mode, MODES)
        one_of("logprobs_mode", self.logprobs_mode, LOGPROBS_MODES)
        one_of("response_format", self.response_format, RESPONSE_FORMATS)
        at_least("timeout_s", self.timeout_s, 0.1)
        at_least("max_retries", self.max_retries, 0)
        at_least("backoff_s", self.backoff_s, 0)
        at_least("max_concurrency", self.max_concurrency, 1)
        above("max_reply_mb", self.max_reply_mb, 0)
        at_least("max_prompt_tokens", self.max_prompt_tokens, 16)
        at_least("verbalized_max_tokens", self.verbalized_max_tokens, 8)
        env_var_name("api_key_env", self.api_key_env)
        if self.tokenizer is not None:
            check_model("tokenizer", self.tokenizer)
        elif self.server == "auto" or self.mode != "verbalized":
            check_model("model", self.model)  # token-id prompts need the served model's tokenizer

    def make(self) -> OpenAIPolicy:
        return OpenAIPolicy(self)

    def serve_spec(self) -> ServeSpec | None:
        return ServeSpec(self.tokenizer or self.model, enforce_eager=self.enforce_eager)


class OpenAIPolicy:
    """Implements `Policy` and `BiasedChooser` against an OpenAI-compatible HTTP server."""

    def __init__(self, config: OpenAIPolicyConfig) -> None:
        check_tree(config, "policy")  # the same checks as at compose time, for code that builds it directly
        self.config = config
        self.name = config.model
        self.base_url = config.base_url.rstrip("/")
        self.server: VLLMServer | None = None
        self.hardware = "api"
        if config.server == "auto":
            self.server = VLLMServer(
                config.tokenizer or config.model, served_model_name=config.model, enforce_eager=config.enforce_eager
            ).start()
            atexit.register(self.server.stop)
            self.base_url = self.server.base_url
            self.hardware = "cpu" if self.server.is_cpu_build else "gpu"
        self.parse_failures = 0  # verbalized replies that were not valid JSON (scored uniform)
        self._http = JSONClient(
            self.base_url,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            backoff_s=config.backoff_s,
            max_concurrency=config.max_concurrency,
            max_reply_bytes=round(config.max_reply_mb * 2**20),
            api_key=None if self.server is None else self.server.api_key,
        )
        self._lock = threading.Lock()
        self._tokens: ChatTokens | None = None
        self._choice = ServedChoice(self._post_json, lambda: self.tokens, config.model, self.base_url,
                                    config.vllm_extras, config.logprobs_mode)  # fmt: skip

    # ---- Policy -----------------------------------------------------------------------------------------------------

    @property
    def window(self) -> ContextWindow:
        """The served model's tokenizer; for verbalized mode without one, an estimate."""
        if self.config.mode == "verbalized" and self.config.tokenizer is None:
            return ApproxWindow(self.config.max_prompt_tokens)
        return self.tokens

    def chooser(self) -> BiasedChooser | None:
        return self if self.config.mode == "choice" else None

    def generator(self) -> Generator | None:
        return self

    def completer(self) -> Completer | None:
        return self

    @charged(LLM)
    def score(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        """score: summed token log-probs per candidate; choice: option log-probs (no bias); verbalized: log of the
        normalised confidences."""
        if not candidates:
            return Scored(np.zeros(0, dtype=np.float64), Usage())
        if self.config.mode == "choice":
            return self._choice.score(prompt, candidates)
        if self.config.mode == "verbalized":
            return self._verbalized(prompt, candidates)
        tokens = self.tokens
        ids = tokens.prompt_ids(prompt)
        cands = [tokens.candidate_ids(c) for c in candidates]
        body, usage = self._post_json(
            "/completions",
            {
                "model": self.config.model,
                "prompt": [ids + c for c in cands],
                "max_tokens": 0,
                "echo": True,
                "logprobs": 0,
                "temperature": 0.0,
                **({"return_tokens_as_token_ids": True} if self.config.vllm_extras else {}),
            },
            Usage(1, len(ids) * len(cands) + sum(map(len, cands)), 0),
        )
        replies = choices(body, len(cands), self.base_url)
        scores = np.zeros(len(cands), dtype=np.float64)
        for i, (cand, reply) in enumerate(zip(cands, replies, strict=True)):
            values = (reply.get("logprobs") or {}).get("token_logprobs") or []
            if len(values) < len(ids) + len(cand):
                raise UserError(
                    f"server at {self.base_url} echoed {len(values)} logprobs for {len(ids) + len(cand)} tokens; "
                    "score mode needs a server that echoes token-id prompts with logprobs (vLLM), else use "
                    "policy.mode=verbalized"
                )
            scores[i] = float(sum(values[len(ids) : len(ids) + len(cand)]))
        return Scored(scores, usage)

    @charged(LLM)
    def generate(self, prompt: Prompt, max_new_tokens: int = 64, schema: Mapping[str, Any] | None = None) -> Generated:
        """Greedy reply through /v1/chat/completions (the server applies its chat template); with a `schema`, asked
        as structured output (`response_format`, per policy.response_format)."""
        payload: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
        }
        if schema is not None and self.config.response_format == "json_schema":
            payload["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        elif schema is not None and self.config.response_format == "json_object":
            payload["response_format"] = {"type": "json_object"}
        body, usage = self._post_json("/chat/completions", payload, Usage(1))
        return Generated(message_text(body, self.base_url).strip(), usage)

    @charged(LLM)
    def complete(self, text: str, max_new_tokens: int = 256, stop: Sequence[str] = ()) -> Generated:
        """Greedy continuation of raw text through /v1/completions (no chat template; the server adds its model's
        begin-of-text token)."""
        payload: dict[str, Any] = {
            "model": self.config.model,
            "prompt": text,
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
        }
        if stop:
            payload["stop"] = list(stop)
        body, usage = self._post_json("/completions", payload, Usage(1))
        choices = body.get("choices")
        reply = (
            choices[0].get("text") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        )
        if not isinstance(reply, str):
            raise InfraError(f"{self.base_url}/completions replied without choices[0].text")
        return Generated(cut_at(reply, stop).strip(), usage)

    # ---- BiasedChooser ----------------------------------------------------------------------------------------------

    @charged(LLM)
    def choose(
        self, prompt: Prompt, candidates: Sequence[str], bias: np.ndarray, temperature: float, seed: int
    ) -> Choice:
        """One step over the numbered options. z comes from the server without a bias. A server whose logprobs are
        processed then samples under `logit_bias`, and its processed log-probs must show the bias (engine_evidence.py:
        "engine", else one UserError); raw logprobs show nothing, so the option is drawn here from z' ("client")."""
        k = len(candidates)
        bias = check_bias(bias, k)
        if self.config.mode == "verbalized":
            if k < 1:
                raise UserError("choice needs at least one candidate")
            scored = self._verbalized(prompt, candidates)
            z_prime = log_softmax(scored.z + bias)
            return Choice(sample_index(z_prime, temperature, seed), scored.z, z_prime, scored.usage, site="client")
        return self._choice.choose(prompt, candidates, bias, temperature, seed)

    # ---- internals --------------------------------------------------------------------------------------------------

    @property
    def tokens(self) -> ChatTokens:
        """The served model's tokenizer, loaded on first use (verbalized mode never needs it)."""
        with self._lock:
            if self._tokens is None:
                source = self.config.tokenizer or self.config.model
                try:
                    self._tokens = ChatTokens(source, self.config.max_prompt_tokens)
                except UserError as e:
                    raise UserError(
                        f"policy.mode={self.config.mode} builds token-id prompts and needs the served model's "
                        f"tokenizer: set policy.tokenizer (a model folder, hub id or 'smollm2'); {e}"
                    ) from e
            return self._tokens

    def _verbalized(self, prompt: Prompt, candidates: Sequence[str]) -> Scored:
        config = self.config
        labels = [str(i + 1) for i in range(len(candidates))]
        payload = confidence_request(prompt, candidates, labels, config.model, config.verbalized_max_tokens,
                                     config.response_format)  # fmt: skip
        body, usage = self._post_json("/chat/completions", payload, Usage(1))
        text = message_text(body, self.base_url)
        confidence = parse_confidences(text, labels)
        if confidence is None:
            with self._lock:
                self.parse_failures += 1
            log.warning("verbalized reply is not a JSON object of confidences; scoring uniform: %r", text[:200])
            confidence = np.zeros(len(candidates))
        return Scored(log_softmax(np.log(confidence + 1.0)), usage)

    def _post_json(self, path: str, payload: dict[str, Any], expected: Usage) -> tuple[dict[str, Any], Usage]:
        """The reply and what it cost: the server's own `usage` when it reports one, else `expected` (counted here
        from the token ids sent)."""
        body = self._http.post(path, payload)
        reported = body.get("usage")
        if isinstance(reported, dict) and reported.get("prompt_tokens") is not None:
            completion = int(reported.get("completion_tokens") or 0)
            return body, Usage(expected.calls, int(reported["prompt_tokens"]), completion)
        return body, expected

    def close(self) -> None:
        """Close the connection pool, and stop the server that server=auto started."""
        self._http.close()
        if self.server is not None:
            self.server.stop()
