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


@dataclass(frozen=True)
class Cluster:
    label: str
    seconds: float
    nearest: str | None  # the label of the nearest other centroid
    distance: float  # cosine distance to it (inf when there is no other)


def clusters(annotation: Annotation, centroids: np.ndarray | None) -> list[Cluster]:
    """Each label with its speech and its nearest neighbour; longest first."""
    labels = list(annotation.labels())
    distances = cosine_distances(centroids, len(labels))
    found = []
    for i, label in enumerate(labels):
        row = distances[i].copy()
        row[i] = np.inf
        j = int(np.argmin(row)) if len(labels) > 1 else -1
        found.append(Cluster(label, annotation.label_duration(label), labels[j] if j >= 0 else None,
                             float(row[j]) if j >= 0 else float("inf")))
    return sorted(found, key=lambda c: -c.seconds)


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
    found = clusters(annotation, centroids)
    if len(found) <= max(1, floor):
        return annotation
    mapping = {c.label: c.label for c in found}
    labels = [c.label for c in found]
    distances = cosine_distances(centroids, len(annotation.labels()))
    index = {label: i for i, label in enumerate(annotation.labels())}
    if rule.one_voice > 0 and floor <= 1 and np.all(distances[np.triu_indices(len(index), 1)] < rule.one_voice):
        mapping = {label: found[0].label for label in labels}
    else:
        _merge_short(found, mapping, distances, index, rule, floor)
        mapping = {label: _root(mapping, label) for label in labels}
    if any(label != target for label, target in mapping.items()):
        annotation = annotation.rename_labels(mapping=mapping).support()
    return drop_short(annotation, rule.min_seconds, floor)


def _merge_short(found: list[Cluster], mapping: dict, distances: np.ndarray, index: dict, rule: SpeakerRule,
                 floor: int) -> None:
    """Shortest first, each short cluster near a kept one joins it; never below `floor` speakers."""
    kept = len(found)
    for cluster in reversed(found):  # shortest first
        if kept <= max(1, floor) or cluster.seconds >= rule.short_seconds:
            break
        others = [c.label for c in found if mapping[c.label] == c.label and c.label != cluster.label]
        if not others:
            break
        row = [distances[index[cluster.label], index[o]] for o in others]
        nearest = int(np.argmin(row))
        if row[nearest] < rule.margin:
            mapping[cluster.label] = others[nearest]
            kept -= 1


def _root(mapping: dict, label: str) -> str:
    while mapping[label] != label:
        label = mapping[label]
    return label


def drop_short(annotation: Annotation, min_seconds: float, floor: int = 0) -> Annotation:
    """Remove speakers with less than `min_seconds` of speech, keeping the longest `floor` (and one)."""
    if min_seconds <= 0:
        return annotation
    by_length = sorted(annotation.labels(), key=annotation.label_duration, reverse=True)
    keep = [label for label in by_length if annotation.label_duration(label) >= min_seconds]
    keep += [label for label in by_length if label not in keep][: max(0, floor - len(keep))]
    return annotation.subset(keep or by_length[:1])
