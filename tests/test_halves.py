"""The tuning/checking split (bench/halves.py): by recording, complete, and no voice in both halves."""

from __future__ import annotations

from bench import halves
from bench.devset import rttm_turns
from bench.scoring import diarization_cases


def speakers(half: str) -> set[str]:
    found = set()
    for case, wav, rttm, case_half in halves.real_cases():
        if case_half == half:
            found |= {speaker for _, _, speaker in rttm_turns(rttm, wav.stem)}
    return found


def test_every_visible_case_is_in_exactly_one_half():
    named = [case for r in halves.RECORDINGS for case in r.cases]
    assert len(named) == len(set(named))
    for name, _, _ in diarization_cases():
        assert halves.half_of(name) in (halves.TUNING, halves.CHECKING), name
    assert {r.half for r in halves.RECORDINGS} == {halves.TUNING, halves.CHECKING}


def test_no_speaker_is_heard_in_both_halves():
    tuning, checking = speakers(halves.TUNING), speakers(halves.CHECKING)
    assert tuning and checking
    assert not tuning & checking, tuning & checking


def test_every_case_has_its_audio_and_reference():
    for case, wav, rttm, _ in halves.real_cases():
        assert wav.is_file() and rttm_turns(rttm, wav.stem), case


def test_single_speaker_clips_are_split_too():
    assert not set(halves.SINGLE_TUNING) & set(halves.SINGLE_CHECKING)
    assert halves.half_of("ptbr/LapsBM_0385") == halves.CHECKING
    assert halves.half_of("crowded") == halves.SYNTHETIC


def test_a_meeting_case_keeps_its_excerpts_in_order(tmp_path):
    cases = {c.name: c for c in halves.meeting_cases(tmp_path)}
    g3 = cases["meeting-ami-g3"]
    assert g3.speakers == 5 and 115 < g3.seconds < 125
    assert halves.half_of("meeting-ami-g3") == halves.TUNING
    assert halves.half_of("meeting-ami-g2") == halves.CHECKING
    turns = rttm_turns(g3.rttm)
    assert turns and max(end for _, end, _ in turns) <= g3.seconds


def test_the_halves_table_counts_each_case_once_and_takes_cpwer_from_the_full_run():
    from bench.accuracy import merged, summarise_halves

    def row(case, der, found, ref, **extra):
        return {"case": case, "half": halves.half_of(case), "ours_der": der, "ours_der_collar": der,
                "bare_der": der, "bare_der_collar": der, "ours_speakers": found, "bare_speakers": found,
                "ref_speakers": ref, **extra}

    ders = [row("ami-mixture-4spk", 0.2, 6, 4), row("ami-debug/dev00", 0.1, 2, 2)]
    dev = [row("mixture", 0.3, 4, 4, ours_cpwer=0.25, bare_cpwer=0.5), row("crowded", 0.4, 20, 27)]
    rows = merged(dev, ders)
    assert [r["case"] for r in rows] == ["ami-mixture-4spk", "ami-debug/dev00", "crowded"]
    assert rows[0]["ours_der"] == 0.2 and rows[0]["ours_cpwer"] == 0.25
    table = summarise_halves(rows)
    assert "| speakers > ref + 1 | 0 | 1 | 0 |" in table
    assert "25.0% (1 cases)" in table


def test_a_room_meeting_mixes_its_own_half_s_voices_with_some_overlap(tmp_path):
    from bench import room

    case = room.meeting(halves.TUNING, tmp_path)
    turns = rttm_turns(case.rttm)
    assert not {s for _, _, s in turns} & speakers(halves.CHECKING)
    assert 3.5 * 60 < case.seconds < 5 * 60 and case.speakers >= 6
    assert 0.05 <= room.overlap_share(turns) <= 0.15
    assert halves.half_of(case.name) == halves.TUNING
    one_sentence = [s for s in {t[2] for t in turns} if sum(1 for t in turns if t[2] == s) == 1]
    assert len(one_sentence) >= 3  # speakers who say one sentence, as in a debate
