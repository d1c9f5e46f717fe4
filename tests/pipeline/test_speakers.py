"""The speaker decision (pipeline/speakers.py) on hand-made clusters: pieces merge, voices stay."""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Segment

from diarized.pipeline.speakers import SpeakerRule, decide


def annotation(turns: list[tuple[float, float, str]]) -> Annotation:
    ann = Annotation()
    for start, end, label in turns:
        ann[Segment(start, end)] = label
    return ann


def unit(*angles: float) -> np.ndarray:
    """Centroids as 2-D unit vectors at these angles (degrees): cosine distance is 1 - cos(delta)."""
    return np.array([[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in angles])


# labels() sorts: A, B, C
MEETING = annotation([(0, 60, "A"), (60, 120, "B"), (120, 124, "C")])
RULE = SpeakerRule(short_seconds=10, margin=0.3, min_seconds=1)


def test_a_short_cluster_near_a_voice_joins_it():
    out = decide(MEETING, unit(0, 90, 20), RULE)  # C is 20 degrees from A: distance 0.06
    assert out.labels() == ["A", "B"]
    assert out.label_duration("A") == 64


def test_a_short_cluster_clearly_apart_is_a_speaker():
    out = decide(MEETING, unit(0, 90, 225), RULE)  # C is 135 degrees from both
    assert out.labels() == ["A", "B", "C"]


def test_long_clusters_are_never_merged_by_the_margin():
    out = decide(MEETING, unit(0, 10, 225), RULE)  # A and B are close, but both long
    assert out.labels() == ["A", "B", "C"]


def test_a_chain_of_short_pieces_lands_on_a_kept_voice():
    ann = annotation([(0, 60, "A"), (60, 65, "B"), (65, 68, "C")])
    out = decide(ann, unit(0, 15, 25), RULE)
    assert out.labels() == ["A"] and out.label_duration("A") == 68


def test_all_close_is_one_voice():
    ann = annotation([(0, 40, "A"), (40, 70, "B")])
    assert decide(ann, unit(0, 30), SpeakerRule(one_voice=0.2)).labels() == ["A"]
    assert decide(ann, unit(0, 60), SpeakerRule(one_voice=0.2)).labels() == ["A", "B"]


def test_min_speakers_is_never_undercut():
    out = decide(MEETING, unit(0, 90, 20), RULE, floor=3)
    assert out.labels() == ["A", "B", "C"]


def test_no_centroids_means_nothing_is_merged():
    assert decide(MEETING, None, RULE).labels() == ["A", "B", "C"]


def test_tiny_clusters_are_dropped():
    ann = annotation([(0, 60, "A"), (60, 60.5, "B")])
    assert decide(ann, unit(0, 180), RULE).labels() == ["A"]
