"""The speaker decision after clustering: which clusters are people, which are pieces of one.

Clustering (centroid linkage, a distance threshold) splits a voice into a second
cluster when part of it sounds different: a cough, a laugh, a turn to the microphone,
overlapped speech. Such a cluster is short. A real speaker who says one sentence is
short too, so length alone cannot tell them apart (a four-person meeting came out as
nine speakers with a floor of 2 embeddings, one reader as two); what differs is how far
the voice is from everyone else's. So a short cluster is merged into the speaker whose
centroid is nearest unless it is at least `margin` (cosine distance) from every other
centroid, and a file whose clusters are all closer than `one_voice` is one speaker.
Clusters under `min_seconds` are dropped whatever their voice (almost always artefacts;
merge.py gives their words to the nearest speaker). Speaker hints are obeyed: the
decision never goes below min_speakers, and num_speakers switches it off.

The defaults were chosen on the tuning half of the real recordings (bench/halves.py)
with bench/speaker_decision.py, which measures every alternative in one table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyannote.core import Annotation


@dataclass(frozen=True)
class SpeakerRule:
    short_seconds: float = 10.0  # a cluster with less speech than this may be a piece of another voice
    margin: float = 0.0  # ... and is one unless its centroid is at least this far from every other
    one_voice: float = 0.0  # every centroid closer than this to every other: one speaker
    min_seconds: float = 1.0  # under this a cluster is dropped (merge.py gives its words away)


def cosine_distances(centroids: np.ndarray | None, count: int) -> np.ndarray:
    """Pairwise cosine distances; a missing or zero centroid is far from everything (never merged)."""
    if centroids is None or len(centroids) < count:
        return np.full((count, count), np.inf)
    vectors = np.asarray(centroids[:count], dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    distances = 1.0 - unit @ unit.T
    unusable = (norms == 0) | ~np.isfinite(norms)
    distances[unusable, :] = np.inf
    distances[:, unusable] = np.inf
    return distances


def decide(annotation: Annotation, centroids: np.ndarray | None, rule: SpeakerRule, floor: int = 0) -> Annotation:
    """The annotation with pieces of one voice relabelled to it and artefacts dropped."""
    labels = list(annotation.labels())  # the order of pyannote's centroids
    if len(labels) <= max(1, floor):
        return annotation
    distances = cosine_distances(centroids, len(labels))
    longest_first = sorted(range(len(labels)), key=lambda i: -annotation.label_duration(labels[i]))
    if rule.one_voice > 0 and floor <= 1 and np.all(distances[np.triu_indices(len(labels), 1)] < rule.one_voice):
        target = {i: longest_first[0] for i in longest_first}
    else:
        target = _merge_short(annotation, labels, longest_first, distances, rule, floor)
    mapping = {labels[i]: labels[_root(target, i)] for i in longest_first}
    if any(label != to for label, to in mapping.items()):
        annotation = annotation.rename_labels(mapping=mapping).support()
    return drop_short(annotation, rule.min_seconds, floor)


def _merge_short(annotation: Annotation, labels: list[str], longest_first: list[int], distances: np.ndarray,
                 rule: SpeakerRule, floor: int) -> dict[int, int]:
    """Shortest first, each short cluster near a kept one joins it; never below `floor` speakers."""
    target = {i: i for i in longest_first}
    kept = len(labels)
    for i in reversed(longest_first):  # shortest first
        if kept <= max(1, floor) or annotation.label_duration(labels[i]) >= rule.short_seconds:
            break
        others = [j for j in longest_first if target[j] == j and j != i]
        nearest = min(others, key=lambda j: distances[i, j])
        if distances[i, nearest] < rule.margin:
            target[i] = nearest
            kept -= 1
    return target


def _root(target: dict[int, int], i: int) -> int:
    while target[i] != i:
        i = target[i]
    return i


def drop_short(annotation: Annotation, min_seconds: float, floor: int = 0) -> Annotation:
    """Remove speakers with less than `min_seconds` of speech, keeping the longest `floor` (and one)."""
    if min_seconds <= 0:
        return annotation
    by_length = sorted(annotation.labels(), key=annotation.label_duration, reverse=True)
    keep = [label for label in by_length if annotation.label_duration(label) >= min_seconds]
    keep += [label for label in by_length if label not in keep][: max(0, floor - len(keep))]
    return annotation.subset(keep or by_length[:1])
