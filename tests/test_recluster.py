"""bench/recluster.py, the rejected re-clustering candidate, on embeddings whose answer is known."""

from __future__ import annotations

import numpy as np

from bench.recluster import ReclusteredAgglomerative, merge_close_centroids, refine
from tests.support.embeddings import same_partition, voices


def test_the_centroid_pass_joins_a_voice_split_in_two_and_keeps_strangers_apart():
    embeddings, truth = voices([30, 30, 20])
    split = truth.copy()
    split[:15] = 3  # the first voice cut in halves, as a long file's drift does
    joined = merge_close_centroids(embeddings, split, merge=0.3)
    assert same_partition(joined, truth)
    assert len(set(merge_close_centroids(embeddings, split, merge=0.3, floor=4))) == 4  # a floor is a floor


def test_refine_moves_a_stray_embedding_to_its_own_voice():
    embeddings, truth = voices([25, 25])
    wrong = truth.copy()
    wrong[[0, 1, 2]] = 1  # three of the first voice given to the second
    assert same_partition(refine(embeddings, wrong, rounds=5), truth)
    assert np.array_equal(refine(embeddings, wrong, rounds=0), wrong)


def test_the_reclustered_agglomerative_step_respects_a_fixed_count():
    embeddings, truth = voices([20, 20, 20])
    clustering = ReclusteredAgglomerative(merge=1.5)
    clustering.instantiate({"method": "centroid", "threshold": 0.75, "min_cluster_size": 2})
    assert len(set(clustering.cluster(embeddings.copy(), 1, 60, num_clusters=3))) == 3
    assert len(set(clustering.cluster(embeddings.copy(), 1, 60))) == 1  # a loose merge joins them all
