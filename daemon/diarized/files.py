"""Durable file operations: atomic writes, fsync of folders and trees, sha256.

The ground floor of the package: it knows nothing about jobs, audio or the
store, so the supervisor, the outbox and the pipeline can all lean on it
without pulling each other in. A reader (the operator, the outbox, a resumed
worker) sees either the old file or the whole new one, never a torn write,
and a rename is durable only once its folder is fsynced.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

HASH_BLOCK = 1 << 20


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_text(path: Path, text: str, mode: int | None = None, owner: tuple[int, int] | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), mode, owner)


def write_bytes(path: Path, data: bytes, mode: int | None = None,
                owner: tuple[int, int] | None = None) -> Path:
    """Temp file in the same folder, fsync, rename.

    The file gets `mode`, or what a plain open() would give (0666 less the umask: 0640
    under the unit's UMask=0027, so the service's group can read transcripts); mkstemp
    alone would leave every output 0600. Secrets pass mode=0o600. `owner` (uid, gid) is
    set before the rename: root editing the service's config keeps it readable by the
    service at every instant.
    """
    mode = (0o666 & ~current_umask()) if mode is None else mode
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if owner is not None:
                os.fchown(fh.fileno(), *owner)
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


def display_name(name: str) -> str:
    """A file name as valid text: bytes that are not UTF-8 (surrogate escapes) become U+FFFD.

    Linux names are bytes; Python hands undecodable ones over as lone surrogates,
    which SQLite, JSON files and terminals refuse.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


NAME_MAX = 255  # bytes in one path component on Linux filesystems


def name_candidates(name: str, tag: str) -> Iterator[str]:
    """name, then name-tag, name-tag-2, ... each cut to fit NAME_MAX bytes (stem shortened)."""
    stem, suffix = os.path.splitext(name)
    yield _fit(stem, suffix)
    yield _fit(stem, f"-{tag}{suffix}")
    for n in itertools.count(2):
        yield _fit(stem, f"-{tag}-{n}{suffix}")


def _fit(stem: str, tail: str) -> str:
    raw, end = os.fsencode(stem), os.fsencode(tail)
    room = NAME_MAX - len(end)
    return os.fsdecode(raw[:room]) + tail if len(raw) > room else stem + tail


def move_to_free_name(src: Path, folder: Path, name: str, tag: str, src_dir_fd: int | None = None) -> Path:
    """Move `src` into `folder` as `name`, or name-tag, name-tag-2...: never over an existing file.

    A hard link claims the new name atomically (it fails if the name is taken), then the
    old name is removed. Where hard links are refused (some network filesystems, or a
    file of another user under protected_hardlinks) a rename to a name checked free is
    the fallback; only this daemon's one thread moves files into these folders.
    With `src_dir_fd`, `src` is a name in that folder (nofollow.Entry: no link on the way).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for candidate in name_candidates(name, tag):
        target = folder / candidate
        if target == src:
            return src
        try:
            os.link(src, target, src_dir_fd=src_dir_fd, follow_symlinks=False)
        except FileExistsError:
            if os.path.samestat(os.stat(src, dir_fd=src_dir_fd, follow_symlinks=False),
                                os.lstat(target)):  # linked before a crash
                os.unlink(src, dir_fd=src_dir_fd)
                fsync_dir(folder)
                return target
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
                raise
            if os.path.lexists(target):
                continue
            os.rename(src, target, src_dir_fd=src_dir_fd)
        else:
            os.unlink(src, dir_fd=src_dir_fd)
        fsync_dir(folder)
        return target
    raise AssertionError("unreachable")


def claim_folder(parent: Path, name: str, tag: str, ours: Callable[[Path], bool]) -> Path:
    """Create parent/name (or name-tag, ...) atomically, or reuse one for which ours() is true."""
    parent.mkdir(parents=True, exist_ok=True)
    for candidate in name_candidates(name, tag):
        folder = parent / candidate
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_dir() and not folder.is_symlink() and ours(folder):
                return folder
            continue
        fsync_dir(parent)
        return folder
    raise AssertionError("unreachable")


def remove_temporaries(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete what write_text leaves when the process is killed mid-write (.NAME.XXXX.tmp)."""
    pattern = "**/.*.tmp" if recursive else ".*.tmp"
    removed = [p for p in folder.glob(pattern) if p.is_file() and not p.is_symlink()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def owner_of(path: Path) -> str:
    """The user owning `path`, by name where the system knows it (for messages that say what to chown)."""
    import pwd

    try:
        uid = Path(path).stat().st_uid
    except OSError:
        return "another user"
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


SPACE_PROBE_BYTES = 1 << 20  # a paused daemon resumes once this much can be written again


def space_problem(folder: Path, size: int = SPACE_PROBE_BYTES) -> OSError | None:
    """Can `size` bytes be written and synced in `folder` now? None if so, else the error (ENOSPC, EROFS...)."""
    probe = Path(folder) / ".space-probe"
    try:
        with probe.open("wb") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
        return None
    except OSError as exc:
        return exc
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def describe_space(folder: Path, exc: Exception) -> str:
    """What an operator reads: which filesystem, how full, what to do."""
    import shutil

    if not isinstance(exc, OSError):  # the store's own words (StoreUnavailable)
        return str(exc)

    try:
        usage = shutil.disk_usage(folder)
        left = f"{size_text(usage.free)} free of {size_text(usage.total)}"
    except OSError:
        left = "its size unknown"
    if exc.errno == errno.EROFS:
        return f"the filesystem holding {folder} is read-only ({left}); remount it read-write"
    return f"the filesystem holding {folder} is full ({left}): {exc.strerror}; free some space"


def size_text(count: float) -> str:
    """Bytes as an operator reads them: 0 B, 812 KiB, 15.9 MiB, 1.8 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit in ("B", "KiB") else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """One writer at a time in a folder (flock on the folder itself), across threads and processes:
    a published transcript is rewritten by renames (relabel.py) and edits (editing.py), never both."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
