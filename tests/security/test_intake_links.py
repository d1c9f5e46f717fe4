"""An inbox writer swapping files for links at the worst moment: nothing outside the inbox is ever taken.

Each swap is made at the exact step it targets (during hashing, between the last
check and the move, a folder on the way), on real files, a real store and the
real intake; tests/security/test_attacker.py races the real daemon as another uid.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from diarized import nofollow
from diarized.inbox import Inbox, sha256_of
from diarized.store import InvalidTransition, open_store


def take(inbox: Inbox, now: float) -> list[str]:
    return inbox.tick(now=now) + inbox.drain(now)


@pytest.fixture
def inbox(make_settings):
    settings = make_settings(settle_seconds=2, rescan_seconds=0.001)
    for folder in (settings.inbox, settings.done, settings.failed):
        folder.mkdir(parents=True, exist_ok=True)
    return Inbox(settings, open_store(settings.db_path))


@pytest.fixture
def secret(inbox) -> Path:
    """A file only the service may read (the dashboard's signing key, say)."""
    path = inbox.settings.db_path.parent / "keys" / "dashboard.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"K" * 32)
    path.chmod(0o600)
    return path


def links_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_symlink()]


def assert_secret_untouched(secret: Path, inbox: Inbox) -> None:
    assert secret.read_bytes() == b"K" * 32 and not secret.is_symlink()
    for job in inbox.store.jobs():
        if job.error_type == "Swapped":
            continue  # what replaced the file, put aside in failed/ as it is (never read)
        if job.source_path and os.path.lexists(job.source_path):
            assert not Path(job.source_path).is_symlink(), f"{job.source_name}: its original is a link"
            assert not os.path.samefile(job.source_path, secret)
    assert links_under(inbox.settings.jobs_dir) == []


def test_a_file_swapped_for_a_link_to_itself_while_hashed_is_not_taken(inbox, data, secret):
    """The attack the stat() check let through: the link resolves to the very inode that was hashed."""
    path = inbox.root / "talk.flac"
    path.write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    moved = inbox.root / "talk-real.flac"

    def swap_while_hashing(opened):
        digest = sha256_of(opened)
        os.rename(path, moved)
        os.symlink(moved, path)  # stat(path) still gives the hashed inode
        return digest
    inbox.hash_file = swap_while_hashing
    assert take(inbox, 0.0) == [] and take(inbox, 3.0) == []
    assert inbox.store.jobs() == []  # the name is a link now: not the file that was hashed
    moved.rename(inbox.root / "talk-real.tmp")  # keep the real file out of the next rounds
    inbox.hash_file = sha256_of
    for now in (4.0, 7.0):
        take(inbox, now)
    assert inbox.store.jobs() == []
    errors = [json.loads(p.read_text()) for p in inbox.settings.failed.glob("*/error.json")]
    assert [e["error_type"] for e in errors] == ["Symlink"]
    assert_secret_untouched(secret, inbox)


def test_a_name_swapped_for_a_link_between_check_and_move_fails_the_job_unread(inbox, data, secret,
                                                                               monkeypatch):
    path = inbox.root / "talk.flac"
    path.write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    rename = os.rename

    def swap_then_rename(src, dst, *args, **kwargs):
        if str(dst).endswith("source.flac"):  # the move into the job folder: swap just before it
            os.rename(path, inbox.root / "talk-real.tmp")
            os.symlink(secret, path)
            monkeypatch.setattr(nofollow.os, "rename", rename)
        return rename(src, dst, *args, **kwargs)
    monkeypatch.setattr(nofollow.os, "rename", swap_then_rename)
    take(inbox, 0.0)
    created = take(inbox, 3.0)
    job = inbox.store.get(created[0])
    assert job.state == "failed" and job.error_type == "Swapped" and "talk.flac" in job.error
    folder = Path(job.source_path).parent
    assert folder.parent == inbox.settings.failed and Path(job.source_path).is_symlink()  # put aside as a link
    assert json.loads((folder / "error.json").read_text())["error_type"] == "Swapped"
    assert_secret_untouched(secret, inbox)
    with pytest.raises(InvalidTransition, match="not a plain file"):
        inbox.store.request_retry(job.id)  # a retry would hand the link to a worker


def test_a_folder_swapped_for_a_link_on_the_way_is_not_entered(inbox, data, secret, tmp_path):
    sub = inbox.root / "batch"
    sub.mkdir()
    (sub / "dashboard.key").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    take(inbox, 0.0)  # seen, settling
    os.rename(sub, inbox.root / "batch-real.tmp")
    os.symlink(secret.parent, sub)  # batch/dashboard.key now resolves to the secret
    for now in (3.0, 6.0, 9.0):
        take(inbox, now)
    assert inbox.store.jobs() == []
    assert_secret_untouched(secret, inbox)
    errors = [json.loads(p.read_text()) for p in inbox.settings.failed.glob("*/error.json")]
    assert [(e["file"], e["error_type"]) for e in errors] == [("batch", "Symlink")]
    assert secret.parent.is_dir() and not secret.parent.is_symlink()


@pytest.mark.parametrize("target", ["config", "fifo"])
def test_a_sidecar_that_is_a_link_or_a_pipe_is_refused_unread(inbox, data, tmp_path, target):
    config = tmp_path / "service.toml"
    config.write_text('api_tokens = ["admin:submit:deadbeef"]\nnum_speakers = 2\n')
    config.chmod(0o600)
    sidecar = inbox.root / "talk.flac.toml"
    if target == "config":
        sidecar.symlink_to(config)
    else:
        os.mkfifo(sidecar)  # opened without O_NONBLOCK this would hang the daemon
    (inbox.root / "talk.flac").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    take(inbox, 0.0)
    assert take(inbox, 3.0) == [] and inbox.store.jobs() == []
    error_file = next(inbox.settings.failed.glob("*/error.json"))
    error = json.loads(error_file.read_text())
    assert error["error_type"] == "BadHints" and "talk.flac.toml" in error["message"]
    assert "api_tokens" not in error_file.read_text() and "deadbeef" not in error_file.read_text()
    moved = error_file.parent / "talk.flac.toml"
    assert os.path.lexists(moved) and (moved.is_symlink() or stat.S_ISFIFO(os.lstat(moved).st_mode))


def test_a_large_sidecar_is_refused_without_parsing(inbox, data):
    """tomllib is quadratic in a dotted key's length: 40 KB took 1.5 GiB; nothing past 4 KiB is parsed."""
    (inbox.root / "talk.flac.toml").write_text("a" + ".a" * 20_000 + " = 1\n")
    (inbox.root / "talk.flac").write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    take(inbox, 0.0)
    take(inbox, 3.0)
    error = json.loads(next(inbox.settings.failed.glob("*/error.json")).read_text())
    assert error["error_type"] == "BadHints" and "larger than 4096 bytes" in error["message"]


def test_a_claim_cut_by_a_crash_is_not_finished_through_a_link(inbox, data, secret):
    """Recorded, then killed before the move; meanwhile the inbox name became a link."""
    from diarized.files import sha256_of as hash_path

    path = inbox.root / "crash.flac"
    path.write_bytes((data / "en-jfk/jfk.flac").read_bytes())
    job = inbox.store.record_incoming(path.name, hash_path(path), path.stat().st_size, 2, 3, path,
                                      inbox.settings.jobs_dir)
    os.rename(path, inbox.root / "crash.tmp")
    path.symlink_to(secret)
    inbox.intake.reconcile()
    assert inbox.store.get(job.id).state == "failed"
    assert path.is_symlink()  # left where it was; the next scan rejects it as a link
    assert_secret_untouched(secret, inbox)
