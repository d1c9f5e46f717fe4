"""An inbox writer racing the real daemon: the daemon as the service's uid, the attacker as another.

The attacker may write the inbox (a setgid folder of a group it is in), not the state
folder. It drops a large file, waits until the daemon holds it open for hashing (the
test watches /proc for that moment), then swaps the name for a link to a file only the
service may read. Nothing the link points at may be taken, moved or read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import Daemon, wait_until

ATTACKER = 4243  # uid and gid of the inbox writer (no passwd entry needed)
SWAP = """
import os, sys
name, target = sys.argv[1], sys.argv[2]
hidden = os.path.join(os.path.dirname(name), "." + os.path.basename(name) + ".real")  # never taken
sys.stdin.readline()            # the test says: the daemon is hashing it now
os.rename(name, hidden)         # the same inode under a hidden name
os.symlink(hidden, name)        # stat(name) still finds the very inode being hashed
print("swapped", flush=True)
sys.stdin.readline()            # later: point the chain at the service's file
os.unlink(hidden)
os.symlink(target, hidden)
print("retargeted", flush=True)
"""


@pytest.fixture
def daemon(public_tmp, unprivileged, models_cache):
    d = Daemon(public_tmp / "var", models_cache, fake_workers=True, user=unprivileged, settle_seconds=1)
    d.start()
    for folder in (d.root.parent, d.root):  # the way to the inbox, for everyone (not the state folder)
        folder.chmod(0o711)
    os.chown(d.inbox, unprivileged[0], ATTACKER)
    d.inbox.chmod(0o2775)  # the inbox group may write; the service owns it
    yield d
    if d.proc.poll() is None:
        d.kill9()


def open_by(pid: int, path: Path) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def test_a_file_swapped_for_a_link_while_the_daemon_hashes_it_is_never_taken(daemon, tmp_path):
    secret = daemon.root / "state" / "worker-settings.json"  # 0600, the service's own
    assert secret.exists() and oct(secret.stat().st_mode & 0o777) == "0o600"
    before = secret.read_bytes()
    name = daemon.inbox / "talk.wav"
    tmp = daemon.inbox / ".talk.wav.part"
    with open(tmp, "wb") as fh:  # big enough that hashing takes a moment
        fh.write(json.dumps({"runs": [{"exit": 0}], "name": "talk"}).encode())
        fh.write(b"\0" * (600 << 20))
    os.chown(tmp, ATTACKER, ATTACKER)
    tmp.chmod(0o644)
    attacker = subprocess.Popen([sys.executable, "-c", SWAP, str(name), str(secret)], cwd=daemon.inbox,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                user=ATTACKER, group=ATTACKER, extra_groups=[])
    try:
        os.rename(tmp, name)
        wait_until(lambda: open_by(daemon.proc.pid, name), 30, "the daemon to open the file for hashing",
                   every=0.002)
        attacker.stdin.write("go\n")
        attacker.stdin.flush()
        assert attacker.stdout.readline().strip() == "swapped", attacker.stderr.read()
        wait_until(lambda: not os.path.lexists(name), 30, "the link to be taken or put aside")
        time.sleep(2)  # (the old daemon had moved the link into the job and run the job by now)
        attacker.stdin.write("go\n")
        attacker.stdin.flush()
        assert attacker.stdout.readline().strip() == "retargeted", attacker.stderr.read()
    finally:
        attacker.wait(10)
    time.sleep(2)
    errors = [json.loads(p.read_text()) for p in (daemon.root / "failed").glob("*/error.json")]
    assert [(e["file"], e["error_type"]) for e in errors] == [("talk.wav", "Symlink")], errors
    for job in daemon.jobs():  # the old intake moved the link in: done/talk.wav led to the service's file
        assert not Path(job.source_path or "/nonexistent").is_symlink(), job
    assert [p for p in (daemon.root / "done").rglob("*") if p.is_symlink()] == []
    assert [p for p in (daemon.root / "state/jobs").rglob("*") if p.is_symlink()] == []
    assert secret.read_bytes() == before and not secret.is_symlink()
    assert "worker-settings" not in " ".join(p.read_text(errors="replace") for p in
                                             (daemon.root / "outbox").rglob("*.json"))
    assert daemon.proc.poll() is None
