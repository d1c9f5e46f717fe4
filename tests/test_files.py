"""Durable file operations on a real filesystem: modes, free names, never overwriting."""

from __future__ import annotations

import os
import stat

import pytest

from diarized import files


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_written_files_get_the_umask_mode_and_secrets_stay_private(tmp_path, umask_027):
    assert files.current_umask() == 0o027
    public = files.write_json(tmp_path / "out/final_transcription.json", {"a": 1})
    secret = files.write_text(tmp_path / "worker-settings.json", "{}", mode=0o600)
    assert stat.S_IMODE(public.stat().st_mode) == 0o640  # the service's group can read outputs
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["final_transcription.json"]


def test_a_move_never_overwrites_and_keeps_names_within_255_bytes(tmp_path):
    done = tmp_path / "done"
    long = "é" * 120 + ".wav"  # 244 bytes
    moved = []
    for n in range(3):
        src = tmp_path / f"in{n}" / long
        src.parent.mkdir()
        src.write_text(f"take {n}")
        moved.append(files.move_to_free_name(src, done, long, f"tag{n:03d}"))
        assert not src.exists()
    assert len({p.name for p in moved}) == 3
    assert sorted(p.read_text() for p in moved) == ["take 0", "take 1", "take 2"]
    assert all(len(os.fsencode(p.name)) <= 255 and p.suffix == ".wav" for p in moved)


def test_a_move_repeated_after_a_crash_between_link_and_unlink_is_not_duplicated(tmp_path):
    src = tmp_path / "a.wav"
    src.write_text("x")
    (tmp_path / "done").mkdir()
    os.link(src, tmp_path / "done/a.wav")  # the crash came before the old name was removed
    assert files.move_to_free_name(src, tmp_path / "done", "a.wav", "tag") == tmp_path / "done/a.wav"
    assert not src.exists() and [p.name for p in (tmp_path / "done").iterdir()] == ["a.wav"]


def test_claim_folder_is_atomic_and_recognises_its_own(tmp_path):
    first = files.claim_folder(tmp_path, "talk", "abc123", lambda f: False)
    (first / "x").write_text("someone else's")
    second = files.claim_folder(tmp_path, "talk", "abc123", lambda f: False)
    again = files.claim_folder(tmp_path, "talk", "abc123", lambda f: f == second)
    assert (first.name, second.name, again) == ("talk", "talk-abc123", second)


def test_display_name_and_temporaries(tmp_path):
    raw = os.fsdecode(b"caf\xe9.wav")
    assert files.display_name(raw) == "caf\ufffd.wav" and files.display_name("ok.wav") == "ok.wav"
    (tmp_path / ".job.json.abc.tmp").write_text("torn")
    (tmp_path / "keep.tmp").write_text("not ours")
    assert files.remove_temporaries(tmp_path) == [tmp_path / ".job.json.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp"]
