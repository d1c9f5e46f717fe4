"""What an inbox writer can do to the inbox folder itself: a tree deeper than PATH_MAX, `rm -rf inbox`.

The real daemon (fake workers) as `nobody`, so permissions are real.
"""

from __future__ import annotations

import os
import shutil


from tests.harness import script, wait_until

LONG = "d" * 250  # a name of 250 bytes; 17 of them nested pass PATH_MAX (4096)


def deep_tree(top, levels: int, uid_gid) -> None:
    """top/LONG/LONG/.../talk.wav, made by descriptor (no path of it fits PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(LONG, dir_fd=fd)
            os.chown(LONG, *uid_gid, dir_fd=fd)
            child = os.open(LONG, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("talk.wav", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, script("deep"))
        os.close(out)
    finally:
        os.close(fd)


def test_a_tree_deeper_than_path_max_is_logged_and_the_daemon_goes_on(daemon, unprivileged):
    """Before: "File name too long" in the inbox walk ended the daemon, and again at every start."""
    deep_tree(daemon.inbox, 17, unprivileged)
    (daemon.inbox / "a").mkdir()
    os.chown(daemon.inbox / "a", *unprivileged)  # an uploader's folder the service may empty
    (daemon.inbox / "a" / "near.wav").write_bytes(script("near"))  # a shallow one beside it
    (daemon.inbox / "plain.wav").write_bytes(script("plain"))
    jobs = daemon.wait_all_final(2, timeout=30)
    assert sorted(j.source_name for j in jobs) == ["near.wav", "plain.wav"]
    wait_until(lambda: "folders below the inbox; its files are not taken" in daemon.log.read_text(), 30,
               "the deep tree to be logged")
    assert daemon.proc.poll() is None
    daemon.stop()
    daemon.start()  # and it starts again with the tree still there
    (daemon.inbox / "after.wav").write_bytes(script("after"))
    assert {j.source_name for j in daemon.wait_all_final(3, timeout=30)} == {"near.wav", "plain.wav", "after.wav"}


def test_a_removed_inbox_is_made_again_and_watched(daemon):
    """Before: `rm -rf inbox` lost the inotify watch silently; nothing dropped afterwards was seen."""
    (daemon.inbox / "first.wav").write_bytes(script("first"))
    daemon.wait_all_final(1, timeout=30)
    shutil.rmtree(daemon.inbox)
    wait_until(lambda: daemon.inbox.is_dir(), 15, "the inbox to be made again")
    assert (daemon.inbox / "high").is_dir() and (daemon.inbox / "low").is_dir()
    assert "removed or replaced; making it again" in daemon.log.read_text()
    (daemon.inbox / "second.wav").write_bytes(script("second"))
    jobs = daemon.wait_all_final(2, timeout=30)
    assert {j.source_name: j.state for j in jobs} == {"first.wav": "succeeded", "second.wav": "succeeded"}
