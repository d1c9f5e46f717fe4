"""Logging for the daemon: structlog over the standard library.

Records carry structured fields (job_id, file, stage) passed as `extra=`;
they render as readable lines on a terminal, as JSON lines elsewhere, and
as native journald fields under systemd (see systemd.py).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import structlog

FIELDS = ("job_id", "file", "stage")


def _add_fields(_logger, _name, event_dict):
    record = event_dict.get("_record")
    if record is not None:
        for key in FIELDS:
            if hasattr(record, key):
                event_dict[key] = getattr(record, key)
    return event_dict


def _formatter(renderer) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        processor=renderer,
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.processors.TimeStamper(fmt="iso", utc=True), _add_fields],
    )


def setup(fmt: str = "auto", log_file: Path | None = None, level: int = logging.INFO,
          extra_handlers: list[logging.Handler] | None = None) -> None:
    """Configure the root logger once, at daemon start."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    human = fmt == "human" or (fmt == "auto" and sys.stderr.isatty())
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_formatter(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
                                    if human else structlog.processors.JSONRenderer()))
    handlers = extra_handlers if extra_handlers else [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(_formatter(structlog.processors.JSONRenderer()))
        handlers = [*handlers, to_file]
    for handler in handlers:
        root.addHandler(handler)
    for noisy in ("watchdog", "faster_whisper", "pytorch_lightning", "lightning"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
