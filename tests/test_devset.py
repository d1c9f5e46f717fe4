"""The development set (bench/devset.py) and cpWER (bench/scoring.py): built from ../shared/data only,
references shifted exactly, long and crowded enough to mean something."""

from __future__ import annotations

import pytest

from bench import devset
from bench.scoring import cpwer


def test_cpwer_pairs_speakers_by_least_error_and_counts_the_unpaired():
    assert cpwer({"a": "hello there", "b": "how are you"}, {"x": "how are you", "y": "hello there"}) == 0.0
    # one hypothesis speaker for both: paired with b (2 insertions), a's 2 words deleted
    assert cpwer({"a": "hello there", "b": "how are you"}, {"x": "hello there how are you"}) == pytest.approx(0.8)
    assert cpwer({"a": "hello there"}, {"x": "hello", "y": "there"}) == pytest.approx(1.0)
    assert cpwer({"a": "Hello, there!"}, {"x": "hello there"}) == 0.0  # normalised as WER is


@pytest.fixture(scope="module")
def cases(tmp_path_factory, data):
    return {c.name: c for c in devset.build(tmp_path_factory.mktemp("devset"))}


def test_the_crowded_case_is_long_crowded_and_speakers_come_back(cases):
    crowded = cases["crowded"]
    assert crowded.seconds >= 15 * 60 and crowded.speakers >= 15
    turns = devset.rttm_turns(crowded.rttm)
    half = crowded.seconds / 2
    early = {s for start, _, s in turns if start < half / 2}
    late = {s for start, _, s in turns if start > half * 1.5}
    assert len(early & late) >= 5  # several speakers of the first quarter speak again in the last


def test_references_are_shifted_by_each_piece_offset(cases):
    ami = devset.ami_pieces()
    joined = devset.rttm_turns(cases["ami-joined"].rttm)
    assert len(joined) == sum(len(p.turns) for p in ami)
    second = ami[1]
    offset = 30.0 + devset.PAUSE_SECONDS  # every AMI debug excerpt is 30 s long
    expected = sorted((s + offset, e + offset, spk) for s, e, spk in second.turns)
    assert all(any(abs(s - js) < 2e-3 and abs(e - je) < 2e-3 and spk == jspk for js, je, jspk in joined)
               for s, e, spk in expected)


def test_only_complete_speaker_texts_make_a_cpwer_reference(cases):
    ptbr = cases["ptbr-joined"]
    assert ptbr.speakers == 8 and len(ptbr.texts) == 8
    assert "ele atribuiu o empate dos espanhóis à má sorte" in ptbr.texts.values()
    assert cases["ami-joined"].texts == {} and cases["crowded"].texts == {}  # AMI debug has no transcripts


def test_solo_stretches_cut_out_every_other_voice():
    turns = [(0.0, 10.0, "a"), (2.0, 3.0, "b"), (2.5, 4.0, "c"), (9.0, 12.0, "b"), (12.0, 14.0, "a")]
    assert devset.solo_stretches(turns, "a") == [(0.0, 2.0), (4.0, 9.0), (12.0, 14.0)]
    assert devset.solo_stretches(turns, "c") == []


def test_the_one_voice_case_is_one_speaker_alone_for_half_a_minute(cases):
    one = cases["one-voice"]
    turns = devset.rttm_turns(one.rttm)
    assert one.speakers == 1 and len({spk for _, _, spk in turns}) == 1
    assert one.seconds >= 30
    assert all(b[0] >= a[1] - 1e-3 for a, b in zip(turns, turns[1:]))  # end to end, no overlap
