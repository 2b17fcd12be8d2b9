"""JSON-schema output for the transformers backend, with lm-format-enforcer (one of vLLM's own structured-output
engines): at each decoding step only the tokens that keep the reply a prefix of a JSON object of the schema are
allowed, so even the embedded 135M model answers in the shape asked for (its content is another matter).

The library's transformers adapter does not import with transformers 5, so its tokenizer table is built here from
the tokenizer directly (the same recipe: each token decoded after a "0", to see whether it starts a word)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import torch
from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData
from transformers import LogitsProcessor


def tokenizer_table(tokenizer: Any, end_of_turn_id: int) -> TokenEnforcerTokenizerData:
    """Every regular token's text as it reads after other text (a one-time cost of a few seconds per tokenizer)."""
    vocab_size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    regular = []
    for token in range(vocab_size):
        if token in special:
            continue
        after_zero = tokenizer.decode([zero, token])[1:]
        alone = tokenizer.decode([token])
        regular.append((token, after_zero, len(after_zero) > len(alone)))

    def decode(tokens: list[int]) -> str:
        return str(tokenizer.decode(tokens)).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, end_of_turn_id, False, vocab_size)


class JsonOnly(LogitsProcessor):
    """Masks every token that would leave the JSON schema (rows of one prompt; the prompt itself is never checked:
    the enforcer starts from the first sequence it sees)."""

    def __init__(self, table: TokenEnforcerTokenizerData, schema: Mapping[str, Any]) -> None:
        self.enforcer = TokenEnforcer(table, JsonSchemaParser(dict(schema)))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, sequence in enumerate(input_ids.tolist()):
            allowed = self.enforcer.get_allowed_tokens(sequence).allowed_tokens
            mask = torch.full_like(scores[row], float("-inf"))
            mask[torch.tensor(allowed, dtype=torch.long, device=scores.device)] = 0.0
            scores[row] = scores[row] + mask
        return scores


class JsonConstraints:
    """One tokenizer table per tokenizer, built on first use."""

    def __init__(self, tokenizer: Any, end_of_turn_id: int) -> None:
        self.tokenizer = tokenizer
        self.end_of_turn_id = end_of_turn_id
        self._table: TokenEnforcerTokenizerData | None = None
        self._lock = threading.Lock()

    def processor(self, schema: Mapping[str, Any]) -> JsonOnly:
        with self._lock:
            if self._table is None:
                self._table = tokenizer_table(self.tokenizer, self.end_of_turn_id)
            return JsonOnly(self._table, schema)
