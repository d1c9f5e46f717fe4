"""An operator's worst day at the inbox, with the daemon running as an unprivileged user.

The real daemon process (fake workers: no models), as `nobody`, so file modes are
real. Every odd file ends in a documented place with a clear error naming it, and
the daemon keeps processing the others; at the end a plain file still goes through.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.harness import Daemon, wait_until


pytestmark = pytest.mark.chaos


def script(name: str, runs=({"exit": 0},)) -> bytes:
    return json.dumps({"runs": list(runs), "name": name}).encode()


@pytest.fixture
def daemon(public_tmp, unprivileged, models_cache):
    d = Daemon(public_tmp / "var", models_cache, fake_workers=True, user=unprivileged,
               max_file_gb=0.0001, max_workers=2)  # 0.0001 GiB: about 107 kB
    d.start()
    yield d
    if d.proc.poll() is None:
        d.kill9()


def errors(d: Daemon) -> dict[str, dict]:
    """failed/<folder>/error.json by the file it names."""
    found = {}
    for path in (d.root / "failed").glob("*/error.json"):
        error = json.loads(path.read_text())
        found[error["file"]] = error
    return found


def test_odd_files_fail_clearly_and_never_stop_the_daemon(daemon, tmp_path, unprivileged):
    d = daemon
    inbox = d.inbox
    unreadable = inbox / "secret.wav"
    unreadable.write_bytes(script("secret"))
    unreadable.chmod(0o000)
    raw_name = os.fsdecode(b"caf\xe9 bar.wav")  # Latin-1 bytes: not UTF-8
    (inbox / raw_name).write_bytes(script("latin1"))
    os.mkfifo(inbox / "pipe.wav")
    (inbox / "huge.wav").write_bytes(b"\0" * 200_000)
    (inbox / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    (tmp_path / "elsewhere.wav").write_bytes(script("elsewhere"))
    long_stem = "x" * 246
    for sub in ("", "a", "b"):  # same names, different content, dropped together
        folder = inbox / sub
        folder.mkdir(exist_ok=True)
        os.chown(folder, *unprivileged)  # an uploader's folder the service may empty
        (folder / "same.wav").write_bytes(script(f"same {sub}"))
        (folder / f"{long_stem}.wav").write_bytes(script(f"long {sub}"))
    for odd in ("-rf.wav", "two  spaces.wav", "new\nline.wav", "ünïcödé 日本.wav"):
        (inbox / odd).write_bytes(script(odd))
    (tmp_path / "original.wav").write_bytes(script("hard link"))
    os.link(tmp_path / "original.wav", inbox / "hardlink.wav")  # a file like any other
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder/inside.wav").write_bytes(script("inside"))
    (inbox / "linked-folder").symlink_to(tmp_path / "folder", target_is_directory=True)
    service_only = d.root / "state" / "worker-settings.json"  # the service's own file (0600)
    for stem, make in (("linked", lambda p: p.symlink_to(service_only)), ("piped", os.mkfifo),
                       ("bloated", lambda p: p.write_text("a" + ".a" * 50_000 + " = 1\n"))):
        make(inbox / f"{stem}.wav.toml")  # sidecars: a link, a pipe, a quadratic-cost key
        (inbox / f"{stem}.wav").write_bytes(script(stem))
    locked = inbox / "locked"  # a folder the service cannot take files out of: skipped, logged
    locked.mkdir()
    (locked / "stuck.wav").write_bytes(script("stuck"))

    d.wait_all_final(12, timeout=90)
    wait_until(lambda: len(errors(d)) >= 8, 30, "eight rejections")
    jobs = d.jobs()
    assert sorted(j.state for j in jobs) == ["succeeded"] * 12, [(j.source_name, j.state) for j in jobs]
    names = sorted(j.source_name for j in jobs)
    assert "caf\ufffd bar.wav" in names and "new\nline.wav" in names and "-rf.wav" in names
    assert names.count("same.wav") == 3 and names.count(f"{long_stem}.wav") == 3
    done = sorted(p.name for p in (d.root / "done").iterdir())
    assert len(done) == 12  # nothing overwritten: three same.wav and three 250-byte names kept
    assert all(len(os.fsencode(n)) <= 255 for n in done)
    assert len(list(d.outbox.iterdir())) == 12
    assert (tmp_path / "original.wav").read_bytes() == script("hard link")  # its other name untouched

    rejected = errors(d)
    assert rejected["secret.wav"]["error_type"] == "Unreadable"
    assert "permission denied" in rejected["secret.wav"]["message"] and "chmod" in rejected["secret.wav"]["hint"]
    assert rejected["pipe.wav"]["error_type"] == "NotAFile"
    assert rejected["huge.wav"]["error_type"] == "TooLarge" and "max_file_gb" in rejected["huge.wav"]["hint"]
    assert rejected["link.wav"]["error_type"] == "Symlink"
    assert rejected["linked-folder"]["error_type"] == "Symlink"  # a linked folder is not entered
    assert (tmp_path / "folder/inside.wav").exists()
    for name in ("secret.wav", "pipe.wav", "huge.wav", "link.wav", "linked-folder"):
        folder = next(p.parent for p in (d.root / "failed").glob("*/error.json")
                      if json.loads(p.read_text())["file"] == name)
        assert os.path.lexists(folder / name), f"{name} was lost"
    assert (tmp_path / "elsewhere.wav").exists()  # the link's target is untouched
    for stem in ("linked", "piped", "bloated"):
        report = rejected[f"{stem}.wav"]
        assert report["error_type"] == "BadHints" and f"{stem}.wav.toml" in report["message"], report
        assert "api_tokens" not in json.dumps(report)  # nothing of the service's file in a readable error
    assert service_only.exists() and not service_only.is_symlink()
    leftovers = [p for p in inbox.rglob("*") if not p.is_dir()]
    assert leftovers == [locked / "stuck.wav"]
    assert "cannot move files out of this folder" in d.log.read_text() and "trying again in 60 s" in d.log.read_text()

    (inbox / "after.wav").write_bytes(script("after"))  # the daemon is still taking files
    jobs = d.wait_all_final(13, timeout=30)
    assert "stuck.wav" not in {j.source_name for j in jobs}  # nothing recorded for what cannot move
    assert d.proc.poll() is None and {j.source_name: j.state for j in jobs}["after.wav"] == "succeeded"
