"""Submitted files: copied, hashed and size-limited on the way in; a killed uploader leaves no trace."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from diarized.intake import Intake
from diarized.store import Priority, SpeakerHints, open_store
from diarized.uploads import BadName, TooLarge, Upload, clean_name
from tests.harness import wait_until


@pytest.fixture
def intake(make_settings):
    settings = make_settings(max_file_gb=0.002)  # 2 MiB: jfk.flac fits, a bigger stream does not
    for folder in settings.folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return Intake(settings, open_store(settings.db_path))


@pytest.mark.parametrize("sent, kept", [
    ("talk.mp4", "talk.mp4"), ("../../etc/passwd", "passwd"), ("C:\\talks\\a b.mp4", "a b.mp4"),
    ("/abs/path/x.wav", "x.wav"), (".hidden.wav", "hidden.wav"), ("x" * 300 + ".wav", "x" * 246 + ".wav")])
def test_only_the_last_part_of_a_clients_name_is_kept(sent, kept):
    assert clean_name(sent) == kept


@pytest.mark.parametrize("sent", ["", "..", "/", "a/..", "nul\x00.wav", "...."])
def test_names_that_cannot_be_files_are_refused(sent):
    with pytest.raises(BadName):
        clean_name(sent)


def test_a_submitted_file_is_a_queued_job_at_once_and_the_callers_file_stays(intake, data):
    source = data / "en-jfk/jfk.flac"
    job = intake.submit(source, priority=Priority.HIGH, speakers=SpeakerHints(num=1))
    assert job.state == "queued" and job.priority_name == "high" and job.num_speakers == 1
    assert job.source_name == "jfk.flac" and open(job.source_path, "rb").read() == source.read_bytes()
    assert source.exists()
    assert list(intake.settings.uploads.iterdir()) == []
    again = intake.submit(source)
    assert again.state == "duplicate" and again.duplicate_of == job.id


def test_a_stream_over_the_limit_leaves_nothing_behind(intake):
    with pytest.raises(TooLarge, match="larger than the limit"):
        intake.submit(io.BytesIO(b"\0" * (3 << 20)), "big.wav")
    assert list(intake.settings.uploads.iterdir()) == [] and intake.store.jobs() == []


def test_bad_hints_are_refused_before_anything_is_written(intake, data):
    with pytest.raises(ValueError, match="larger than max_speakers"):
        intake.submit(data / "en-jfk/jfk.flac", speakers=SpeakerHints(min=5, max=2))
    assert intake.store.jobs() == []


UPLOADER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from diarized.uploads import Upload
    upload = Upload(Path(sys.argv[1]), "talk.wav")
    upload.write(Path(sys.argv[2]).read_bytes())
    if sys.argv[3] == "commit":
        upload.commit()
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("stage", ["writing", "commit"])
def test_an_uploader_killed_mid_way_is_swept_at_the_next_start(intake, data, stage):
    """kill -9 of a real uploader: a half copy is removed, a complete one becomes a job; a live one is left."""
    source = data / "en-jfk/jfk.flac"
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER, str(intake.settings.uploads), str(source), stage],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert intake.sweep_uploads() == []  # alive: its lock keeps the sweep away
    assert len(list(intake.settings.uploads.iterdir())) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    notes = intake.sweep_uploads()
    assert list(intake.settings.uploads.iterdir()) == []
    jobs = intake.store.jobs()
    if stage == "commit":
        assert len(jobs) == 1 and jobs[0].state == "queued" and jobs[0].source_name == "talk.wav"
        assert any("taken" in n for n in notes)
    else:
        assert jobs == [] and any("removed" in n for n in notes)


def test_a_recorded_upload_mid_move_is_left_to_its_uploader(intake, data):
    """reconcile (a daemon starting) must not race an uploader between record and move."""
    upload = Upload(intake.settings.uploads, "talk.wav")
    upload.write((data / "en-jfk/jfk.flac").read_bytes())
    path = upload.commit()
    job = intake.store.record_incoming("talk.wav", upload.digest, upload.size, Priority.NORMAL, 3, path,
                                       intake.settings.jobs_dir)
    pid = os.fork()
    if pid == 0:  # a second process, like a starting daemon: the upload's lock is held by the parent
        os._exit(0 if intake.reconcile() == [] else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert intake.store.get(job.id).state == "incoming" and path.exists()
    upload.close()  # the uploader died: its recorded file is gone with its folder
    wait_until(lambda: intake.reconcile(), 5, "reconcile to act")
    assert intake.store.get(job.id).state == "failed"
