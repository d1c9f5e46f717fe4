"""Inbox decisions on real files and a real store (the daemon tests cover the watcher)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diarized.inbox import Inbox, is_temporary, open_for_writing
from diarized.store import open_store


def take(inbox: Inbox, now: float) -> list[str]:
    """One tick, then wait for the hashes it started (the daemon collects them on later ticks)."""
    return inbox.tick(now=now) + inbox.drain(now)


@pytest.fixture
def inbox(make_settings):
    settings = make_settings(settle_seconds=2, rescan_seconds=0.001)  # every tick rescans
    for folder in (settings.inbox / "high", settings.inbox / "low", settings.done, settings.failed):
        folder.mkdir(parents=True, exist_ok=True)
    return Inbox(settings, open_store(settings.db_path))


@pytest.mark.parametrize("name, temporary", [
    ("talk.mp4", False), (".talk.mp4", True), ("talk.mp4.part", True), ("talk.tmp", True),
    ("talk.mp4.crdownload", True), ("talk.partial", True), ("talk.mp4~", True), ("TALK.PART", True)])
def test_temporary_names(name, temporary):
    assert is_temporary(name) is temporary


def test_file_is_taken_only_after_two_stable_looks(inbox, data):
    path = inbox.root / "a.wav"
    path.write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    assert take(inbox, 100.0) == []
    assert take(inbox, 101.0) == []
    with path.open("ab") as fh:  # still growing: the clock restarts
        fh.write(b"\0")
    assert take(inbox, 101.5) == []
    assert take(inbox, 103.0) == []
    created = take(inbox, 103.6)
    assert len(created) == 1
    job = inbox.store.get(created[0])
    assert job.state == "queued" and os.path.exists(job.source_path) and not path.exists()


def test_temporary_and_hidden_files_are_left_alone(inbox):
    for name in (".hidden.wav", "x.wav.part", "y.tmp"):
        (inbox.root / name).write_bytes(b"data")
    for now in (0.0, 10.0, 20.0):
        assert take(inbox, now) == []
    assert len(list(inbox.root.iterdir())) == 5  # + high/ low/


def test_priority_folders_and_subdirectories(inbox, data):
    (inbox.root / "high/h.flac").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    (inbox.root / "batch/2024").mkdir(parents=True)
    (inbox.root / "batch/2024/d.wav").write_bytes((data / "pyannote-sample/sample.wav").read_bytes())
    take(inbox, 0.0)
    created = take(inbox, 5.0)
    jobs = {inbox.store.get(i).source_name: inbox.store.get(i) for i in created}
    assert jobs["h.flac"].priority_name == "high" and jobs["d.wav"].priority_name == "normal"


def test_symlinks_are_not_followed_but_quarantined(inbox, data, tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes((data / "pyannote-sample/sample.wav").read_bytes())
    (inbox.root / "link.wav").symlink_to(secret)
    assert take(inbox, 0.0) == []
    assert take(inbox, 5.0) == []
    assert secret.exists() and not (inbox.root / "link.wav").exists()
    errors = list(inbox.settings.failed.glob("*/error.json"))
    assert len(errors) == 1 and "symbolic link" in errors[0].read_text()


def test_open_for_writing_sees_our_own_open_file(tmp_path):
    path, other = tmp_path / "f.wav", tmp_path / "g.wav"
    other.write_bytes(b"y")
    with path.open("wb") as fh:
        fh.write(b"x")
        assert open_for_writing([path, other]) == {path}
    with other.open("rb"):
        assert open_for_writing([path, other]) == set()


def test_a_file_held_open_for_writing_is_never_taken_whatever_the_pause(inbox, data):
    path = inbox.root / "upload.wav"
    payload = (data / "pyannote-sample/sample.wav").read_bytes()
    with path.open("wb") as fh:
        fh.write(payload[:1000])
        fh.flush()
        for now in (0.0, 10.0, 60.0, 600.0):  # long pauses, the writer still has it open
            assert take(inbox, now) == []
        fh.write(payload[1000:])
    assert take(inbox, 601.0) == []  # the close starts a fresh window
    created = take(inbox, 604.0)
    assert len(created) == 1 and inbox.store.get(created[0]).size == len(payload)


def test_an_appending_writer_that_reopens_gets_one_job_when_it_stops(inbox, data):
    path = inbox.root / "growing.wav"
    payload = (data / "pyannote-sample/sample.wav").read_bytes()
    step = len(payload) // 10
    for i in range(10):  # reopen, append, close: a close event each time, a second apart
        with path.open("ab") as fh:
            fh.write(payload[i * step:(i + 1) * step])
        inbox.events.put(str(path))
        assert take(inbox, float(i)) == []
    with path.open("ab") as fh:
        fh.write(payload[10 * step:])
    inbox.events.put(str(path))
    assert take(inbox, 10.0) == []
    created = take(inbox, 12.5)
    assert len(created) == 1 and inbox.store.get(created[0]).size == len(payload)
    assert len(inbox.store.jobs()) == 1


def test_a_file_replaced_while_hashed_is_not_taken_until_it_settles_again(inbox, data):
    from diarized.inbox import sha256_of

    path = inbox.root / "swap.wav"
    path.write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    replacement = (data / "pyannote-sample/sample.wav").read_bytes()

    def replaced_while_hashing(opened):
        digest = sha256_of(opened)
        path.unlink()
        path.write_bytes(replacement)  # a new inode, other bytes, same name
        return digest
    inbox.hash_file = replaced_while_hashing
    assert take(inbox, 0.0) == [] and take(inbox, 3.0) == []  # hashed, then found changed
    assert inbox.store.jobs() == []
    inbox.hash_file = sha256_of
    assert take(inbox, 4.0) == []  # a fresh window
    created = take(inbox, 6.0)
    assert len(created) == 1 and inbox.store.get(created[0]).size == len(replacement)


def test_reconcile_finishes_a_claim_interrupted_after_recording(inbox, data):
    from diarized.files import sha256_of

    path = inbox.root / "crash.flac"
    path.write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    # the crash: the row is written, the file never moved
    job = inbox.store.record_incoming(path.name, sha256_of(path), path.stat().st_size, 2, 3, path,
                                      inbox.settings.jobs_dir)
    notes = inbox.intake.reconcile()
    assert notes and inbox.store.get(job.id).state == "queued"
    assert os.path.exists(inbox.store.get(job.id).source_path) and not path.exists()


def test_reconcile_fails_a_claim_whose_file_vanished(inbox, tmp_path):
    job = inbox.store.record_incoming("gone.wav", "abc", 1, 2, 3, inbox.root / "gone.wav", inbox.settings.jobs_dir)
    inbox.intake.reconcile()
    assert inbox.store.get(job.id).state == "failed"


def test_a_sidecar_gives_its_file_speaker_hints_and_travels_with_it(inbox, data):
    (inbox.root / "panel.flac.toml").write_text("min_speakers = 2\nmax_speakers = 12\n")
    (inbox.root / "panel.flac").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    take(inbox, 0.0)
    created = take(inbox, 3.0)
    job = inbox.store.get(created[0])
    assert (job.num_speakers, job.min_speakers, job.max_speakers) == (None, 2, 12)
    assert "min_speakers 2, max_speakers 12" in inbox.store.events(job.id)[0].detail
    assert (Path(job.source_path).parent / "hints.toml").exists()
    assert sorted(p.name for p in inbox.root.iterdir()) == ["high", "low"]  # the sidecar is no job


def test_a_sidecar_gives_its_file_options(inbox, data):
    (inbox.root / "aula.flac.toml").write_text('language = "pt"\nmodel = "base"\nformats = ["json", "docx"]\n'
                                                'initial_prompt = "Aula de física, professora Ana."\n')
    (inbox.root / "aula.flac").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    take(inbox, 0.0)
    job = inbox.store.get(take(inbox, 3.0)[0])
    assert job.options == {"language": "pt", "model": "base", "formats": ["json", "docx"],
                           "initial_prompt": "Aula de física, professora Ana."}
    assert "language 'pt', model 'base', formats json,docx" in inbox.store.events(job.id)[0].detail


@pytest.mark.parametrize("text, words", [
    ("min_speakers = 5\nmax_speakers = 2\n", "min_speakers (5) is larger than max_speakers (2)"),
    ("speakers = 3\n", "unknown key(s) speakers"),
    ("num_speakers = [\n", "not valid TOML"),
    ('model = "large-v9"\n', "model 'large-v9' is not available on this server; it has base, tiny.en"),
    ('model = "../../etc"\n', "model '../../etc' is not available"),
    ('language = "pt"\nmodel = "tiny.en"\n', "model tiny.en understands English only"),
])
def test_a_bad_sidecar_sends_both_files_to_failed_with_the_reason(inbox, data, text, words):
    (inbox.root / "talk.flac.toml").write_text(text)
    (inbox.root / "talk.flac").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    take(inbox, 0.0)
    assert take(inbox, 3.0) == [] and inbox.store.jobs() == []
    errors = list(inbox.settings.failed.glob("*/error.json"))
    error = json.loads(errors[0].read_text())
    assert error["error_type"] == "BadHints" and words in error["message"] and "talk.flac" in error["message"]
    assert sorted(p.name for p in errors[0].parent.iterdir()) == ["error.json", "talk.flac", "talk.flac.toml"]
