"""sd_notify (READY, STATUS, WATCHDOG, STOPPING) and journald logging.

Through systemd-python when it is installed (`diarized[systemd]`), else a
small standard-library fallback speaking the same protocols: datagrams to
$NOTIFY_SOCKET, and journald's native protocol to /run/systemd/journal/socket.
Off systemd everything here is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from typing import Callable

from diarized.supervisor import Notifier

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "diarized"
MAX_FIELD = 64 * 1024
# logging level -> syslog priority (journald's PRIORITY=)
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
STRUCTURED = {"job_id": "JOB_ID", "stage": "STAGE", "file": "FILE"}


def _socket_address(path: str) -> str:
    return "\0" + path[1:] if path.startswith("@") else path  # '@' marks an abstract socket


def _stdlib_notify(message: str, env: dict | None = None) -> bool:
    path = (env or os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(_socket_address(path))
        sock.sendall(message.encode())
    return True


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not running under a service manager."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    try:
        from systemd import daemon  # type: ignore[import-not-found]
    except ImportError:
        return _stdlib_notify(message)
    return bool(daemon.notify(message))


def watchdog_interval() -> float | None:
    """Half of WatchdogSec= (systemd's advice), or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


def systemd_notifier(send: Callable[[str], bool] = notify, clock: Callable[[], float] = time.monotonic) -> Notifier:
    """A supervisor Notifier that talks to systemd, throttled so the loop stays cheap."""
    interval = watchdog_interval()
    state = {"status": "", "watchdog": float("-inf")}

    def status(text: str) -> None:
        if text != state["status"]:
            state["status"] = text
            send(f"STATUS={text}")

    def watchdog() -> None:
        now = clock()
        if interval is not None and now - state["watchdog"] >= min(interval, 10.0):
            state["watchdog"] = now
            send("WATCHDOG=1")

    def stopping(seconds: float) -> None:
        send(f"STOPPING=1\nEXTEND_TIMEOUT_USEC={int(seconds * 1e6)}\nSTATUS=stopping: waiting for workers")

    return Notifier(ready=lambda: send("READY=1\nSTATUS=ready"), status=status,
                    watchdog=watchdog, stopping=stopping)


# -- journald ---------------------------------------------------------------------
def encode_fields(fields: dict[str, str]) -> bytes:
    """journald's native format: KEY=value lines; binary-safe form for multi-line values."""
    out = bytearray()
    for key, value in fields.items():
        data = str(value).encode("utf-8", "replace")[:MAX_FIELD]
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald with JOB_ID, STAGE, FILE and PRIORITY fields."""

    def __init__(self, socket_path: str = JOURNAL_SOCKET, identifier: str = IDENTIFIER):
        super().__init__()
        self.socket_path, self.identifier = socket_path, identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(PRIORITIES.get(record.levelno, 6)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname, "CODE_LINE": str(record.lineno), "CODE_FUNC": record.funcName,
        }
        for attr, key in STRUCTURED.items():
            if getattr(record, attr, None) is not None:
                fields[key] = str(getattr(record, attr))
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = self.fields(record)
            try:
                from systemd import journal  # type: ignore[import-not-found]
            except ImportError:
                self.sock.sendto(encode_fields(fields), self.socket_path)
            else:
                journal.send(**fields)
        except Exception:  # noqa: BLE001 - logging must never take the daemon down
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def under_journald() -> bool:
    """stderr is connected to the journal (systemd sets JOURNAL_STREAM)."""
    return bool(os.environ.get("JOURNAL_STREAM")) and os.path.exists(JOURNAL_SOCKET)
