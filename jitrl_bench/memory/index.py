"""Cosine nearest-neighbour search with faiss: exact below a size threshold, approximate (HNSW or IVF) above it.

Vectors are L2-normalised on the way in, so inner product = cosine similarity. One `VectorIndex` holds one partition
of the memory (e.g. one task); ids are the memory's global entry ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from jitrl_bench.checks import Checked, at_least, one_of


@dataclass
class IndexConfig(Checked):
    """How the memory's embeddings are searched."""

    approximate: str = "hnsw"
    """Index used above `exact_below` entries: `hnsw` (graph, no training) or `ivf` (inverted lists, trained once)."""
    exact_below: int = 10_000
    """Partitions smaller than this are searched exactly (IndexFlatIP): about 0.4 ms per query at 10^4 on 2 cores."""
    hnsw_m: int = 32
    """HNSW graph degree."""
    hnsw_ef_construction: int = 80
    """HNSW build-time beam width."""
    hnsw_ef_search: int = 128
    """HNSW query-time beam width (recall vs speed)."""
    ivf_nprobe: int = 48
    """IVF lists visited per query."""
    gpu: str = "auto"
    """`auto` moves exact indexes to the GPU when faiss sees one; `off` keeps everything on the CPU."""

    def check(self) -> None:
        one_of("approximate", self.approximate, ("hnsw", "ivf"))
        at_least("exact_below", self.exact_below, 1)
        at_least("hnsw_m", self.hnsw_m, 2)
        at_least("hnsw_ef_construction", self.hnsw_ef_construction, 1)
        at_least("hnsw_ef_search", self.hnsw_ef_search, 1)
        at_least("ivf_nprobe", self.ivf_nprobe, 1)
        one_of("gpu", self.gpu, ("auto", "off"))


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


class VectorIndex:
    """An append-only cosine index that switches from exact to approximate search when it grows."""

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        self.dim = dim
        self.config = config or IndexConfig()
        self.kind = "flat"
        self._built_at = 0
        self._ids = np.empty(0, dtype=np.int64)
        self._index: faiss.Index = self._flat()

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def _flat(self) -> faiss.Index:
        index: faiss.Index = faiss.IndexFlatIP(self.dim)
        if self.config.gpu == "auto" and _gpu_count() > 0:
            index = faiss.index_cpu_to_all_gpus(index)
        return index

    def _approximate(self, vectors: np.ndarray) -> faiss.Index:
        cfg = self.config
        index: Any
        if cfg.approximate == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.hnsw_ef_construction
            index.hnsw.efSearch = cfg.hnsw_ef_search
        elif cfg.approximate == "ivf":
            nlist = max(1, min(int(np.sqrt(len(vectors))), len(vectors) // 39))  # faiss wants ≥ 39 points per list
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 64 * nlist), replace=False)]
            index.train(sample)
            index.nprobe = cfg.ivf_nprobe
        else:
            raise ValueError(f"memory.index.approximate must be 'hnsw' or 'ivf', got {cfg.approximate!r}")
        index.add(vectors)
        built: faiss.Index = index
        return built

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = normalize(vectors)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"embedding dim {vectors.shape[1]} != index dim {self.dim}")
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        if self._needs_rebuild():
            # Crossing the threshold (or an IVF that outgrew its training set 4x): rebuild over everything so far.
            n = self._index.ntotal
            if isinstance(self._index, faiss.IndexIVF):
                self._index.make_direct_map()
            held = self._index.reconstruct_n(0, n) if n else np.empty((0, self.dim), dtype=np.float32)
            self._index = self._approximate(np.concatenate([held, vectors]))
            self.kind = self.config.approximate
            self._built_at = len(self)
            return
        self._index.add(vectors)

    def _needs_rebuild(self) -> bool:
        if self.kind == "flat":
            return len(self) >= self.config.exact_below
        return self.kind == "ivf" and len(self) >= 4 * self._built_at

    def overhead_bytes(self) -> int:
        """Bytes the index holds beyond the raw vectors (e.g. HNSW links), for the memory benchmark."""
        return max(len(faiss.serialize_index(self._index)) - len(self) * self.dim * 4, 0)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, cosine similarities), best first; fewer when the index holds fewer."""
        if len(self) == 0 or k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        sims, pos = self._index.search(normalize(query), min(k, len(self)))
        keep = pos[0] >= 0
        return self._ids[pos[0][keep]], sims[0][keep]
