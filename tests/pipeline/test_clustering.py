"""The spectral clustering candidate on embeddings whose answer is known (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from diarized.pipeline.clustering import SpectralClustering


def voices(counts: list[int], spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of len(counts) speakers: a random direction each, `count` noisy copies of it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(counts), 192))
    labels = np.repeat(np.arange(len(counts)), counts)
    return centres[labels] + spread * np.linalg.norm(centres, axis=1).mean() / np.sqrt(192) * \
        rng.normal(size=(len(labels), 192)) * 4, labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len({(x, y) for x, y in zip(a, b)}) == len(set(a)) == len(set(b))


@pytest.mark.parametrize("counts", [[40], [30, 25], [20, 20, 15, 10], [12] * 9])
def test_the_eigengap_finds_the_number_of_voices(counts):
    embeddings, truth = voices(counts)
    found = SpectralClustering().cluster(embeddings, min_clusters=1, max_clusters=len(embeddings))
    assert same_partition(found, truth), (len(set(found)), len(counts))


def test_hints_fix_or_bound_the_count():
    embeddings, _ = voices([20, 20, 20])
    clustering = SpectralClustering()
    assert len(set(clustering.cluster(embeddings, 1, 60, num_clusters=2))) == 2
    assert len(set(clustering.cluster(embeddings, 4, 60))) >= 4  # a floor is a floor
    assert len(set(clustering.cluster(embeddings, 1, 2))) == 2  # a ceiling is a ceiling
