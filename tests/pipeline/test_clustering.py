"""The spectral clustering candidate on embeddings whose answer is known (no model needed)."""

from __future__ import annotations

import pytest

from diarized.pipeline.clustering import SpectralClustering
from tests.support.embeddings import same_partition, voices


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
