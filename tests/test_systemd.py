"""sd_notify and journald, against real AF_UNIX datagram sockets owned by the test."""

from __future__ import annotations

import logging
import signal
import socket
import struct
import threading
import time

import pytest

from diarized import systemd
from diarized.files import sha256_of
from diarized.store import Priority, open_store
from tests.harness import Daemon, wait_until


class Listener:
    """A datagram socket standing in for systemd's notify (or journal) socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, bytes]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
                self.messages.append((time.monotonic(), data))  # stamped on arrival
            except socket.timeout:
                continue

    def texts(self) -> list[str]:
        return [m.decode() for _, m in self.messages]

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def parse_journal(datagram: bytes) -> dict[str, str]:
    fields, rest = {}, datagram
    while rest:
        line, _, tail = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = tail
        else:
            size = struct.unpack("<Q", tail[:8])[0]
            fields[line.decode()] = tail[8:8 + size].decode()
            rest = tail[8 + size + 1:]
    return fields


@pytest.mark.slow
def test_daemon_speaks_sd_notify(tmp_path, models_cache, data):
    listener = Listener(tmp_path / "notify.sock")
    d = Daemon(tmp_path / "var", models_cache, max_workers=1)
    d.env.update(NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="2000000")
    # a claim interrupted by a "crash": READY must come only after it is recovered
    store = open_store(d.root / "state/diarized.db")
    (d.root / "inbox").mkdir(parents=True)
    stranded = d.drop(data / "en-jfk/jfk.flac")
    job = store.record_incoming("jfk.flac", sha256_of(stranded), stranded.stat().st_size, Priority.NORMAL, 3,
                                stranded, d.root / "state/jobs")  # (recovery checks the file is the one recorded)
    try:
        d.start()
        ready_at = wait_until(lambda: next((t for t, m in listener.messages if b"READY=1" in m), None),
                              30, "READY=1")
        queued_at = next(e.at for e in store.events(job.id) if e.kind == "queued")
        assert queued_at <= time.time() - (time.monotonic() - ready_at)  # recovered, then ready
        wait_until(lambda: any("STATUS=1 running" in t for t in listener.texts()), 60, "a running STATUS")
        d.wait_all_final(1)
        time.sleep(2.5)
        beats = [t for t, m in listener.messages if m == b"WATCHDOG=1"]
        assert len(beats) >= 3 and max(b - a for a, b in zip(beats, beats[1:])) < 2.0
        assert any(t.startswith("STATUS=0 running, 0 queued") for t in listener.texts())
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0
        stopping = [t for t in listener.texts() if t.startswith("STOPPING=1")]
        assert stopping and "EXTEND_TIMEOUT_USEC=" in stopping[0]
    finally:
        if d.proc and d.proc.poll() is None:
            d.kill9()
        listener.close()


def test_journal_fallback_encodes_fields(tmp_path):
    listener = Listener(tmp_path / "journal.sock")
    handler = systemd.JournalHandler(socket_path=str(tmp_path / "journal.sock"))
    logger = logging.getLogger("diarized.test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("unit %d failed\nsecond line", 3,
                       extra={"job_id": "20261125-101010-abcdef", "stage": "transcribe", "file": "talk.mp4"})
        logger.info("plain")
        wait_until(lambda: len(listener.messages) >= 2, 5, "two journal datagrams")
    finally:
        logger.removeHandler(handler)
        handler.close()
        listener.close()
    first = parse_journal(listener.messages[0][1])
    assert first["MESSAGE"] == "unit 3 failed\nsecond line"
    assert first["PRIORITY"] == "4" and first["SYSLOG_IDENTIFIER"] == "diarized"
    assert (first["JOB_ID"], first["STAGE"], first["FILE"]) == ("20261125-101010-abcdef", "transcribe", "talk.mp4")
    second = parse_journal(listener.messages[1][1])
    assert second["MESSAGE"] == "plain" and second["PRIORITY"] == "6" and "JOB_ID" not in second


def test_notify_fallback_and_throttling(tmp_path, monkeypatch):
    listener = Listener(tmp_path / "n.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    clock = iter([0.0, 1.0, 20.0])
    notifier = systemd.systemd_notifier(send=systemd._stdlib_notify, clock=lambda: next(clock))
    try:
        notifier.ready()
        notifier.status("1 running")
        notifier.status("1 running")  # unchanged: not sent again
        notifier.watchdog()
        notifier.watchdog()  # 1 s later: throttled
        notifier.watchdog()  # 20 s later: sent
        wait_until(lambda: len(listener.messages) >= 4, 5, "notify datagrams")
    finally:
        listener.close()
    assert listener.texts() == ["READY=1\nSTATUS=ready", "STATUS=1 running", "WATCHDOG=1", "WATCHDOG=1"]
