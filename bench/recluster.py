"""A centroid re-clustering pass after pyannote's agglomerative step: a measured, rejected candidate.

The idea (issue 12, item 4) is for long files: centroid linkage compares raw
means, which shrink as a voice's embeddings spread over an hour, so two halves
of one voice could stay apart while a short stranger joins one of them. Here
the centroids are unit vectors, the closest pair under a cosine distance
`merge` is joined, and a few k-means steps on the sphere move each embedding
to its nearest centroid. bench/tune_clustering.py measures it on the
development set (README, "Speakers on long recordings"): merging changes
nothing up to 0.3, merges the two voices of pyannote-sample at 0.4, and the
k-means steps make the crowded file worse, so it stays here, out of the
service.
"""

from __future__ import annotations

import numpy as np
from pyannote.audio.pipelines.clustering import AgglomerativeClustering


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _centroids(embeddings: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    return _unit(np.vstack([embeddings[clusters == k].mean(axis=0) for k in range(clusters.max() + 1)]))


def merge_close_centroids(embeddings: np.ndarray, clusters: np.ndarray, merge: float,
                          floor: int = 1) -> np.ndarray:
    """Join the two clusters whose unit centroids are closest, while under `merge` and above `floor`."""
    clusters = clusters.copy()
    while clusters.max() + 1 > max(1, floor):
        centres = _centroids(embeddings, clusters)
        distance = 1.0 - centres @ centres.T
        np.fill_diagonal(distance, np.inf)
        first, second = np.unravel_index(np.argmin(distance), distance.shape)
        if distance[first, second] >= merge:
            break
        clusters[clusters == max(first, second)] = min(first, second)
        clusters = np.unique(clusters, return_inverse=True)[1]
    return clusters


def refine(embeddings: np.ndarray, clusters: np.ndarray, rounds: int) -> np.ndarray:
    """K-means steps on the sphere: every embedding to its nearest unit centroid, until stable."""
    for _ in range(rounds):
        nearest = np.argmax(_unit(embeddings) @ _centroids(embeddings, clusters).T, axis=1)
        nearest = np.unique(nearest, return_inverse=True)[1]
        if np.array_equal(nearest, clusters):
            break
        clusters = nearest
    return clusters


class ReclusteredAgglomerative(AgglomerativeClustering):
    """pyannote's agglomerative clustering, then merge_close_centroids and refine."""

    def __init__(self, merge: float = 0.3, rounds: int = 5):
        super().__init__(metric="cosine")
        self.merge, self.rounds = merge, rounds

    def cluster(self, embeddings: np.ndarray, min_clusters: int, max_clusters: int,
                num_clusters: int | None = None) -> np.ndarray:
        clusters = super().cluster(embeddings, min_clusters, max_clusters, num_clusters)
        if num_clusters:
            return clusters  # a fixed count is the operator's
        merged = merge_close_centroids(embeddings, np.asarray(clusters), self.merge, min_clusters)
        refined = refine(embeddings, merged, self.rounds)
        return refined if refined.max() + 1 >= min_clusters else merged  # a floor stays a floor
