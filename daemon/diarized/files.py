"""Durable file operations: atomic writes, fsync of folders and trees, sha256.

The ground floor of the package: it knows nothing about jobs, audio or the
store, so the supervisor, the outbox and the pipeline can all lean on it
without pulling each other in. A reader (the operator, the outbox, a resumed
worker) sees either the old file or the whole new one, never a torn write,
and a rename is durable only once its folder is fsynced.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

HASH_BLOCK = 1 << 20


def write_text(path: Path, text: str, mode: int | None = None) -> Path:
    """Temp file in the same folder, fsync, rename; `mode` (e.g. 0o640) before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any, mode: int | None = None) -> Path:
    return write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n", mode)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Every file, then every folder, under `folder`: before a tree is published by one rename."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    for path in sorted({p.parent for p in folder.rglob("*")} | {folder}):
        fsync_dir(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
