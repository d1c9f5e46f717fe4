"""A job's published files as one zip ("download all"), built from descriptors, never from paths.

Each file is opened below the outbox without following a link (serve.open_owned),
exactly as a single download is, and copied into an unnamed temporary file that
is then served by its own descriptor (ranges and all). The zip is written to disk,
not memory: a job with its chunks can be hundreds of MiB, and the API's memory is
bounded (MemoryMax=1G).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from diarized.api.serve import open_owned
from diarized.nofollow import Opened

BLOCK = 1 << 20


def build(outbox: Path, files: dict[str, Path], top: str) -> Opened:
    """A zip of `files` (name in the job's list -> path), each under `top`/; returned open at its start."""
    spool = tempfile.TemporaryFile(prefix="diarized-zip-")
    try:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for name, path in files.items():
                with open_owned((outbox,), path) as opened, archive.open(f"{top}/{name}", "w") as out:
                    offset = 0
                    while block := os.pread(opened.fd, BLOCK, offset):
                        out.write(block)
                        offset += len(block)
        spool.flush()
        fd = os.dup(spool.fileno())
    finally:
        spool.close()
    return Opened(fd, os.fstat(fd))
