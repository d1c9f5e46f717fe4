"""Speaker embeddings whose answer is known, for clustering tests that need no model."""

from __future__ import annotations

import numpy as np


def voices(counts: list[int], spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of len(counts) speakers: a random direction each, `count` noisy copies of it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(counts), 192))
    labels = np.repeat(np.arange(len(counts)), counts)
    return centres[labels] + spread * np.linalg.norm(centres, axis=1).mean() / np.sqrt(192) * \
        rng.normal(size=(len(labels), 192)) * 4, labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len({(x, y) for x, y in zip(a, b)}) == len(set(a)) == len(set(b))
