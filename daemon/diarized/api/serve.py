"""Serving a job's own file by the descriptor it was checked with, never by its path again.

A path checked and then opened by name can be swapped in between; Starlette's
FileResponse opens by name (once per range). Here the file is opened once below
a folder the service owns, without following any link (nofollow.open_beneath),
checked by that descriptor (a regular file, the job's own size for an original),
and every byte sent, ranges included, is read from that same descriptor.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import anyio
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from diarized.nofollow import Opened, Refused, open_beneath


class NotServable(Exception):
    """The file is not the job's own plain file below a folder the service owns."""


def open_owned(roots: tuple[Path, ...], path: Path, size: int | None = None) -> Opened:
    """`path` opened below the first of `roots` that holds it; NotServable otherwise.

    `size`: what the job recorded of this file; another size means it is not the job's own.
    """
    for root in roots:
        try:
            opened = open_beneath(root, path)
        except ValueError:
            continue  # not below this root
        except (OSError, Refused):
            raise NotServable(f"{path} cannot be served") from None
        if size is not None and opened.stat.st_size != size:
            opened.close()
            raise NotServable(f"{path} is not the job's original any more")
        return opened
    raise NotServable(f"{path} is outside the folders the service serves from")


class DescriptorResponse(FileResponse):
    """A FileResponse (ranges, ETag, HEAD) whose bytes all come from one checked descriptor."""

    def __init__(self, opened: Opened, filename: str, media_type: str | None = None,
                 content_disposition_type: str = "attachment"):
        self.opened = opened
        super().__init__(f"/proc/self/fd/{opened.fd}", filename=filename, media_type=media_type,
                         stat_result=opened.stat, content_disposition_type=content_disposition_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        try:
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            self.opened.close()

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        fd = os.dup(self.opened.fd)  # each range reads from the start of its own dup; the checked
        os.lseek(fd, 0, os.SEEK_SET)  # inode is the same, whatever its name is now
        file = anyio.wrap_file(os.fdopen(fd, "rb"))
        try:
            yield file
        finally:
            with anyio.CancelScope(shield=True):
                await file.aclose()

    def __del__(self) -> None:  # a response built but never sent still lets its descriptor go
        opened = getattr(self, "opened", None)
        if opened is not None:
            opened.close()
