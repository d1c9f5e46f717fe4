"""Reading and moving entries of folders that less trusted users write, never following a link.

An inbox writer can swap any entry for a symbolic link at any moment: the file
itself, or a folder on the way to it. A path resolved in one call (open, stat,
rename) would then reach wherever the link points, with the service's rights.
So nothing here resolves a path in one step:

- a folder is entered one component at a time, each relative to the last and
  opened with O_NOFOLLOW|O_DIRECTORY (`open_folder`), so a depth of any length
  works too (no PATH_MAX);
- an entry is then named by (its folder's descriptor, its name) (`Entry`); it is
  looked at with lstat through that descriptor and moved with renameat from it;
- a file is opened once with O_NOFOLLOW|O_NONBLOCK (a link fails, a pipe cannot
  block), checked by its descriptor (fstat), hashed through it, and after a move
  the target is checked to be that very inode (`Entry.move_to`).

Paths are kept for messages and records only. The roots themselves (inbox/,
state/uploads/) are the operator's configuration and are trusted.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterator

from diarized.files import HASH_BLOCK, fsync_dir, move_to_free_name, name_candidates

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(OSError):
    """An entry that is not what it must be: `kind` is "Symlink" or "NotAFile"."""

    def __init__(self, kind: str, path: Path, what: str):
        super().__init__(errno.ELOOP if kind == "Symlink" else errno.EINVAL, what, str(path))
        self.kind = kind


class Swapped(OSError):
    """The entry was replaced between the look that decided and the move: nothing of it is taken."""

    def __init__(self, path: Path):
        super().__init__(errno.ESTALE, "replaced while it was being taken", str(path))


def open_folder(root: Path, relative: PurePath) -> int:
    """A descriptor of root/relative, entered without following a link in `relative`."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in relative.parts:
            if part in ("", ".", ".."):
                raise ValueError(f"{relative} must be a plain path below {root}")
            try:
                child = os.open(part, FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused("Symlink", root / relative, f"{part} on the way to it is a link or "
                                  "not a folder") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lexists(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must not change between the look that decided and the move: same inode, same bytes."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class Entry:
    """One name in one folder, the folder held by descriptor (see the module docstring)."""

    root: Path
    relative: PurePath
    folder: int = field(init=False)

    def __post_init__(self) -> None:
        self.folder = open_folder(self.root, self.relative.parent)

    @property
    def name(self) -> str:
        return self.relative.name

    @property
    def path(self) -> Path:
        return self.root / self.relative

    def lstat(self) -> os.stat_result:
        return os.stat(self.name, dir_fd=self.folder, follow_symlinks=False)

    def open(self) -> "Opened":
        """The regular file itself, opened once; a link, pipe, socket or device raises Refused."""
        try:
            fd = os.open(self.name, FILE_FLAGS, dir_fd=self.folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused("Symlink", self.path, "is a symbolic link") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise Refused("NotAFile", self.path, "is not a regular file (a pipe, socket or device)")
        return Opened(fd, st)

    def is_regular(self) -> bool:
        """Is the name a regular file now (not a link)? False when it is gone."""
        try:
            return stat.S_ISREG(self.lstat().st_mode)
        except FileNotFoundError:
            return False

    def still(self, opened: "Opened") -> bool:
        """Does the name still hold the inode `opened` holds, unchanged since it was opened?"""
        try:
            now = self.lstat()
        except FileNotFoundError:
            return False
        return (stat.S_ISREG(now.st_mode) and identity(now) == identity(opened.stat)
                and identity(os.fstat(opened.fd)) == identity(opened.stat))

    def move_to(self, target: Path, opened: "Opened | None" = None) -> Path:
        """Rename to `target` (a name that must be free, in a folder the service owns).

        With `opened`, the target is then checked to be that inode; if the name was swapped
        in the instant between the last look and the rename, Swapped is raised and what was
        moved stays at `target` for the caller to put aside (it is never read).
        """
        os.rename(self.name, target, src_dir_fd=self.folder)
        fsync_dir(target.parent)
        if opened is not None:
            moved = os.lstat(target)
            if not stat.S_ISREG(moved.st_mode) or (moved.st_dev, moved.st_ino) != (opened.stat.st_dev,
                                                                                 opened.stat.st_ino):
                raise Swapped(self.path)
        return target

    def move_to_free_name(self, folder: Path, name: str, tag: str) -> Path:
        """Into `folder` as `name`, or name-tag, ...: never over an existing file (files.move_to_free_name)."""
        return move_to_free_name(Path(self.name), folder, name, tag, src_dir_fd=self.folder)

    def rename_here(self, name: str, tag: str) -> "Entry":
        """Give the entry another name in its own folder (name, name-tag, ...: never over another)."""
        for candidate in name_candidates(name, tag):
            try:
                os.link(self.name, candidate, src_dir_fd=self.folder, dst_dir_fd=self.folder,
                        follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:  # hard links refused (another user's file): rename to a free name
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
                    raise
                if _lexists(candidate, self.folder):
                    continue
                os.rename(self.name, candidate, src_dir_fd=self.folder, dst_dir_fd=self.folder)
            else:
                os.unlink(self.name, dir_fd=self.folder)
            os.fsync(self.folder)
            return self.sibling(candidate)
        raise AssertionError("unreachable")

    def sibling(self, name: str) -> "Entry":
        return Entry(self.root, self.relative.with_name(name))

    def close(self) -> None:
        if self.folder >= 0:
            os.close(self.folder)
            self.folder = -1

    def __enter__(self) -> "Entry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Opened:
    """A regular file held open: what is hashed, checked and moved is this inode."""

    fd: int
    stat: os.stat_result

    def sha256(self) -> str:
        digest, offset = hashlib.sha256(), 0
        while block := os.pread(self.fd, HASH_BLOCK, offset):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def read(self, limit: int) -> bytes:
        """At most `limit` bytes from the start."""
        return os.pread(self.fd, limit, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Opened":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Found:
    """An entry met by `walk`: its path below the root, and what it is."""

    relative: PurePath
    kind: str  # "file", "link" (to anything), "other" (pipe, socket, device), "deep" (a folder not entered)


def walk(root: Path, max_depth: int, skip_folder=lambda name: False) -> Iterator[Found]:
    """Every entry below `root`, folders entered by descriptor (no link followed, no PATH_MAX).

    Folders deeper than max_depth are reported as "deep" and not entered, so a crafted
    tree cannot exhaust recursion or descriptors. An entry that cannot be looked at
    (it vanished, no permission) is skipped; a folder that cannot be opened is skipped.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield from _walk(fd, PurePath(), 1, max_depth, skip_folder)
    finally:
        os.close(fd)


def _walk(fd: int, here: PurePath, depth: int, max_depth: int, skip_folder) -> Iterator[Found]:
    with os.scandir(fd) as entries:
        listed = list(entries)
    for entry in listed:
        relative = here / entry.name
        try:
            if entry.is_symlink():
                yield Found(relative, "link")
            elif entry.is_dir(follow_symlinks=False):
                if skip_folder(entry.name):
                    continue
                if depth >= max_depth:
                    yield Found(relative, "deep")
                    continue
                try:
                    child = os.open(entry.name, FOLDER_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # gone, swapped for a link or unreadable: the next scan sees what it is
                try:
                    yield from _walk(child, relative, depth + 1, max_depth, skip_folder)
                finally:
                    os.close(child)
            elif entry.is_file(follow_symlinks=False):
                yield Found(relative, "file")
            else:
                yield Found(relative, "other")
        except OSError:
            continue


def open_beneath(root: Path, path: Path) -> Opened:
    """The regular file at `path`, which must lie below `root`, opened without following any link
    below `root` (what the API serves: a job's own outputs and original, nothing a link points at)."""
    relative = Path(os.path.normpath(path)).relative_to(os.path.normpath(root))  # ValueError: outside
    with Entry(root, relative) as entry:
        return entry.open()
