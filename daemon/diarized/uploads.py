"""Copying a submitted file into the state folder, so that intake can take it by rename.

`diarizectl submit`, the Python API and the HTTP API hand files over from
anywhere (another filesystem, a network stream). Each copy goes to
state/uploads/<tag>/<name>.part, is hashed and counted as it is written
(the size limit stops it early, and the file is never read twice), fsynced,
and renamed to <name>: only then does intake see it. The tag folder is held
under an flock while the copy and its intake run, so a daemon starting
meanwhile (`sweep`) leaves it alone; a kill -9 releases the lock, and the
next sweep removes a half-written copy or takes a complete one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator

from diarized.files import NAME_MAX, display_name, fsync_dir

BLOCK = 1 << 20
PART = ".part"


class TooLarge(ValueError):
    """The upload passed the size limit; what was written is gone."""


class BadName(ValueError):
    """A submitted file name that cannot be a file name here."""


def clean_name(name: str) -> str:
    """The last component of a client's file name, as readable text that fits with .part.

    Clients send paths ('C:\\\\talks\\\\a.mp4', '../../etc/x'): only the final name counts,
    so nothing a client sends can point outside the upload folder.
    """
    base = PurePosixPath(display_name(name).replace("\\", "/")).name.lstrip(".").strip()
    if not base or "\x00" in base:
        raise BadName(f"{name!r} is not a usable file name; give the file a name such as talk.mp4")
    raw = os.fsencode(base)
    room = NAME_MAX - len(PART)
    if len(raw) > room:
        stem, suffix = os.path.splitext(base)
        base = os.fsencode(stem)[:room - len(os.fsencode(suffix))].decode("utf-8", "ignore") + suffix
    return base


class Upload:
    """One file being copied into state/uploads/: written in blocks, hashed and counted."""

    def __init__(self, uploads: Path, name: str, max_bytes: int | None = None):
        self.name = clean_name(name)
        self.max_bytes = max_bytes
        uploads.mkdir(parents=True, exist_ok=True)
        self.folder = uploads / secrets.token_hex(6)
        self.folder.mkdir()
        self._lock = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.part = self.folder / (self.name + PART)
        self._fh = self.part.open("xb")
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def path(self) -> Path:
        """Where the complete copy is once committed."""
        return self.folder / self.name

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def write(self, block: bytes) -> None:
        self.size += len(block)
        if self.max_bytes is not None and self.size > self.max_bytes:
            limit = self.max_bytes / 2**30
            raise TooLarge(f"{self.name} is larger than the limit of "
                           + (f"{limit:.1f} GiB" if limit >= 1 else f"{self.max_bytes / 2**20:.0f} MiB")
                           + " (max_file_gb)")
        self._hash.update(block)
        self._fh.write(block)

    def copy_from(self, source: BinaryIO) -> None:
        for block in iter(lambda: source.read(BLOCK), b""):
            self.write(block)

    def commit(self) -> Path:
        """Durable under its real name: the point from which intake (or a sweep) may take it."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.rename(self.part, self.path)
        fsync_dir(self.folder)
        return self.path

    def close(self) -> None:
        """Remove what is left (the copy went into a job, or failed) and release the lock."""
        if not self._fh.closed:
            self._fh.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self._lock)

    def __enter__(self) -> "Upload":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def abandoned(uploads: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Upload folders whose writer is gone (their lock is free): (folder, complete files in it).

    The caller takes the complete files; `forget` then removes the folder with any .part.
    """
    if not uploads.is_dir():
        return
    for folder in sorted(p for p in uploads.iterdir() if p.is_dir() and not p.is_symlink()):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live upload
            complete = [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()
                        and not p.name.endswith(PART)]
            yield folder, complete
        finally:
            os.close(fd)


def in_live_upload(path: Path, uploads: Path) -> bool:
    """Is `path` a file of an upload whose writer still holds its folder (mid-intake)?"""
    if path.parent.parent != uploads or not path.parent.is_dir():
        return False
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def forget(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
