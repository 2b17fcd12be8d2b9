"""Chat-template token ids for a policy model, without loading its weights.

The transformers, vLLM and OpenAI-compatible backends all score the same token sequences: the chat-template prompt
ending with the assistant's generation prompt, then the candidate's ids and the end-of-turn token. Building them in one
place (ids concatenated as ids, never as strings) keeps the backends' numbers comparable to 1e-4.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from jitrl_bench.checks import BadValue
from jitrl_bench.contract import Prompt
from jitrl_bench.errors import UserError
from jitrl_bench.policies.models import SMOLLM2_NAME, smollm2_gguf, smollm2_path
from jitrl_bench.text import first_line

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "owner/name"; anything else must be a local folder


class ChatTokens:
    """A chat model's tokenizer plus the two id builders every backend shares. Thread-safe: a fast tokenizer used from
    several threads at once can fail with "Already borrowed", so calls are serialised (they take microseconds)."""

    tokenizer: Any  # a transformers tokenizer; Any because its stubs are loose

    def __init__(self, model: str, max_prompt_tokens: int = 1024) -> None:
        if max_prompt_tokens < 1:
            raise UserError(f"policy max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
        self.source, self.name = resolve_model(model)
        self.max_prompt_tokens = max_prompt_tokens
        self._lock = threading.Lock()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        except OSError as e:
            raise UserError(f"cannot load policy model {model!r}: {first_line(e)}") from e
        if not self.tokenizer.chat_template:
            raise UserError(f"policy model {model!r} has no chat template; use an instruct/chat model")
        self.end_of_turn_id = end_of_turn_id(self.tokenizer)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Chat-template ids ending with the assistant's generation prompt, cut to the last `max_prompt_tokens`
        (prompt layouts fit the window first, so the cut is a last resort)."""
        return self._template_ids(prompt)[-self.max_prompt_tokens :]

    def _template_ids(self, prompt: Prompt) -> list[int]:
        messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
        with self._lock:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        return [int(i) for i in ids]

    # ---- ContextWindow --------------------------------------------------------------------------------------------

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(row) for row in ids]

    def prompt_tokens(self, prompt: Prompt) -> int:
        return len(self._template_ids(prompt))

    def candidate_ids(self, candidate: str) -> list[int]:
        """The reply's ids plus end-of-turn, so a reply that is a prefix of another ("go" / "go north") must also
        pay for stopping."""
        return [*self.text_ids(candidate), self.end_of_turn_id]

    def text_ids(self, text: str) -> list[int]:
        """Plain ids of `text` (no special tokens), as they would follow the generation prompt."""
        with self._lock:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids]

    def single_token_ids(self, labels: list[str]) -> list[int]:
        """One token id per label, as the first token of a reply; a label that is several tokens cannot be chosen in
        one decoding step."""
        ids = []
        for label in labels:
            tokens = self.text_ids(label)
            if len(tokens) != 1:
                raise UserError(
                    f"option label {label!r} is {len(tokens)} tokens in {self.name}'s tokenizer; choice mode needs "
                    "single-token labels: use policy.mode=score"
                )
            ids.append(tokens[0])
        if len(set(ids)) != len(ids):
            raise UserError(f"option labels {labels} share tokens in {self.name}'s tokenizer; use policy.mode=score")
        return ids

    def raw_ids(self, text: str) -> list[int]:
        """Ids of raw text with the model's own begin-of-text (no chat template), cut to the last
        `max_prompt_tokens`; special tokens written in the text are read as such."""
        with self._lock:
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return [int(i) for i in ids][-self.max_prompt_tokens :]

    def stop_ids(self) -> list[int]:
        """End-of-turn and end-of-text: where a raw completion stops."""
        eos = self.tokenizer.eos_token_id
        return sorted({self.end_of_turn_id, *([int(eos)] if isinstance(eos, int) else [])})

    def decode(self, ids: list[int]) -> str:
        with self._lock:
            return str(self.tokenizer.decode(ids, skip_special_tokens=True))


@dataclass(frozen=True)
class ApproxWindow:
    """A context window for a policy without a tokenizer: about one token per word piece (a word, a number, or a
    punctuation mark), which over-counts English text a little, so prompts stay inside the real window."""

    max_prompt_tokens: int = 4096

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(PIECE.findall(text)) for text in texts]

    def prompt_tokens(self, prompt: Prompt) -> int:
        return sum(self.count([m.content for m in prompt.messages])) + 4 * len(prompt.messages)


PIECE = re.compile(r"[A-Za-z]{1,6}|[0-9]{1,3}|[^A-Za-z0-9\s]")


def resolve_model(model: str) -> tuple[str, str]:
    """(what to pass to from_pretrained, a readable name). Unknown local paths fail here with a clear message."""
    if model == "smollm2":
        return str(smollm2_path()), SMOLLM2_NAME
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), path.resolve().name
    if HUB_ID.match(model) and not path.exists():
        return model, model.rsplit("/", 1)[-1]
    raise UserError(f"policy model folder not found: {model} (give a model folder, a hub id, or 'smollm2')")


def end_of_turn_id(tokenizer: Any) -> int:
    """The token the chat template puts after an assistant reply (e.g. <|im_end|>), else the tokenizer's EOS."""
    user = [{"role": "user", "content": "hi"}]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    try:
        opened = list(tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False))
        closed = list(
            tokenizer.apply_chat_template(
                [*user, {"role": "assistant", "content": "ok"}], tokenize=True, return_dict=False
            )
        )
    except Exception:  # odd templates (e.g. ones that refuse a trailing assistant turn): fall back to EOS
        opened, closed = [], []
    if opened and closed[: len(opened)] == opened:
        for token in closed[len(opened) :]:
            if token in special:
                return int(token)
    if tokenizer.eos_token_id is None:
        raise UserError("policy tokenizer has no end-of-turn or EOS token; candidates cannot be scored")
    return int(tokenizer.eos_token_id)


def check_model(key: str, model: str) -> None:
    """A config check: the model names something that exists here (a folder, a hub id, or smollm2), without loading
    it."""
    try:
        if model == "smollm2":
            smollm2_gguf()  # installed? (converting it is the first load's job, not the check's)
        else:
            resolve_model(model)
    except UserError as e:
        raise BadValue(key, model, str(e)) from None


def cut_at(text: str, stop: Sequence[str]) -> str:
    """The text before the first of the stop strings."""
    for word in stop:
        if word and word in text:
            text = text[: text.index(word)]
    return text
