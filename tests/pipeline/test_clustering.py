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


def _pyannote_and_ours(threshold: float = 0.75, min_cluster_size: int = 2):
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering

    from diarized.pipeline.clustering import LinearMemoryAgglomerative

    made = []
    for kind in (AgglomerativeClustering, LinearMemoryAgglomerative):
        clustering = kind(metric="cosine")
        clustering.instantiate({"method": "centroid", "threshold": threshold, "min_cluster_size": min_cluster_size})
        made.append(clustering)
    return made


@pytest.mark.parametrize("counts", [[40], [30, 25, 2, 1], [20, 20, 15, 10, 1, 1], [12] * 9 + [3, 1]])
def test_linear_memory_agglomerative_is_pyannote_s_clustering(counts):
    """The shipped clustering builds its dendrogram in O(n) memory; the answer must not move."""
    import numpy as np

    embeddings, _ = voices(counts)
    theirs, ours = _pyannote_and_ours()
    for hints in ((1, len(embeddings), None), (1, 3, None), (6, len(embeddings), None), (1, len(embeddings), 2)):
        expected = theirs.cluster(embeddings.copy(), *hints)  # pyannote normalises its input in place
        found = ours.cluster(embeddings.copy(), *hints)
        assert np.array_equal(found, expected), (counts, hints)
