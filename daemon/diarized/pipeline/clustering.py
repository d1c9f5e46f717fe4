"""Clustering steps for pyannote's pipeline: agglomerative in linear memory (shipped), spectral (a candidate).

LinearMemoryAgglomerative is pyannote's agglomerative clustering with its
dendrogram built by fastcluster from the vectors instead of scipy from every
pairwise distance: the same dendrogram, but 8,000 embeddings (about two hours
of a meeting) take 88 MiB instead of 567, so a worker's peak no longer grows
with the square of the file's length. Where the count must be forced (speaker
hints, or a count outside min/max) pyannote's own search runs, as before.

SpectralClustering is a candidate with an eigengap count:

pyannote's SpeakerDiarization clusters one embedding per (chunk, local speaker).
Its default here is agglomerative (centroid linkage, a distance threshold and a
minimum cluster size). This module offers the other recipe that speaker
toolkits use, written from its published description (3D-Speaker's
SpectralCluster; Wang et al., "Speaker diarization with LSTM", 2018), not
copied from either: cosine affinities, each row pruned to its strongest
`prune` share, symmetrised; the unnormalised graph Laplacian; the number of
speakers at the largest gap between its smallest eigenvalues; k-means on that
many eigenvectors. Selected with `diarization_clustering = "spectral"`;
bench/tune_clustering.py measures it against agglomerative on the development set.
"""

from __future__ import annotations

import fastcluster
import numpy as np
from pyannote.audio.pipelines.clustering import AgglomerativeClustering, BaseClustering
from scipy.cluster.hierarchy import fcluster
from scipy.spatial.distance import cdist
from scipy.linalg import eigh
from sklearn.cluster import KMeans

MIN_KEPT = 6  # neighbours kept per row at least: a few embeddings must still connect
MAX_SPEAKERS = 40  # eigenvalues looked at for the gap when no ceiling is given


class SpectralClustering(BaseClustering):
    expects_num_clusters: bool = False

    def __init__(self, metric: str = "cosine", prune: float = 0.02):
        super().__init__(metric=metric)
        self.prune = prune

    def affinity(self, embeddings: np.ndarray) -> np.ndarray:
        unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        sim = unit @ unit.T
        count = len(sim)
        keep = min(count, max(MIN_KEPT, int(round(self.prune * count))))
        weakest = np.argsort(sim, axis=1)[:, : count - keep]
        pruned = sim.copy()
        np.put_along_axis(pruned, weakest, 0.0, axis=1)
        np.fill_diagonal(pruned, 0.0)
        return np.clip(0.5 * (pruned + pruned.T), 0.0, None)

    def count(self, eigenvalues: np.ndarray, low: int, top: int) -> int:
        """The eigengap rule: the k in [low, top] after which the next eigenvalue jumps most."""
        top = min(top, len(eigenvalues) - 1)
        if top <= low:
            return max(1, top)
        gaps = np.diff(eigenvalues[: top + 1])
        return int(np.argmax(gaps[low - 1:]) + low)

    def cluster(self, embeddings: np.ndarray, min_clusters: int, max_clusters: int,
                num_clusters: int | None = None) -> np.ndarray:
        if len(embeddings) < 2:
            return np.zeros(len(embeddings), dtype=np.int64)
        affinity = self.affinity(embeddings)
        laplacian = np.diag(affinity.sum(axis=1)) - affinity
        # the gap is looked for among the first eigenvalues only: near the top of a small
        # spectrum gaps grow for any data, and a speaker needs a few embeddings to be one
        low = max(1, min_clusters)
        top = max(low, min(max_clusters, MAX_SPEAKERS, len(embeddings) // MIN_KEPT))
        if num_clusters:
            low = top = num_clusters
        values, vectors = eigh(laplacian, subset_by_index=[0, min(top + 1, len(embeddings)) - 1])
        k = self.count(values, low, top)
        if k == 1:
            return np.zeros(len(embeddings), dtype=np.int64)
        return KMeans(n_clusters=k, n_init=10, random_state=42).fit_predict(vectors[:, :k])


class LinearMemoryAgglomerative(AgglomerativeClustering):
    """pyannote's AgglomerativeClustering (centroid linkage on unit vectors), dendrogram in O(n) memory."""

    def cluster(self, embeddings: np.ndarray, min_clusters: int | None = None, max_clusters: int | None = None,
                num_clusters: int | None = None) -> np.ndarray:
        if self.method != "centroid" or self.metric != "cosine" or num_clusters or len(embeddings) < 2:
            return super().cluster(embeddings, min_clusters, max_clusters, num_clusters)
        smallest = min(self.min_cluster_size, max(1, round(0.1 * len(embeddings))))  # as pyannote does
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
        dendrogram = fastcluster.linkage_vector(unit, method="centroid", metric="euclidean")
        clusters = fcluster(dendrogram, self.threshold, criterion="distance") - 1
        labels, counts = np.unique(clusters, return_counts=True)
        large, small = labels[counts >= smallest], labels[counts < smallest]
        if not (min_clusters or 1) <= len(large) <= (max_clusters or len(embeddings)):
            return super().cluster(embeddings, min_clusters, max_clusters, num_clusters)  # its count search
        if len(small) == 0:
            return clusters
        large_centroids = np.vstack([unit[clusters == k].mean(axis=0) for k in large])
        small_centroids = np.vstack([unit[clusters == k].mean(axis=0) for k in small])
        nearest = np.argmin(cdist(large_centroids, small_centroids, metric=self.metric), axis=0)
        for small_k, large_k in enumerate(nearest):
            clusters[clusters == small[small_k]] = large[large_k]
        return np.unique(clusters, return_inverse=True)[1]
