"""How a recording becomes a job over HTTP: a multipart upload, a file on this server, or a URL.

All three end in the same intake as the inbox (intake.py), with the same limits,
dedupe, speaker hints and options, checked before anything is kept. POST /jobs
and the dashboard's upload form share take_multipart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from diarized.api import upload as multipart
from diarized.api.clients import Clients
from diarized.api.errors import ApiError
from diarized.config import Settings, speaker_hint_problems
from diarized.intake import Intake
from diarized.options import parse as parse_options
from diarized.store import Job, JobOptions, Priority, SpeakerHints
from diarized.uploads import TooLarge

HINT_KEYS = ("num_speakers", "min_speakers", "max_speakers")


async def take_multipart(request: Request, clients: Clients,
                         accept: Callable[[dict[str, str]], None] = lambda fields: None) -> Job:
    """A multipart upload streamed into intake.

    An honest Content-Length over the limit is refused before the body is read; `accept` may
    refuse the form by its fields (the dashboard's CSRF secret) before anything is recorded.
    """
    settings = clients.settings
    length = request.headers.get("content-length")
    limit = int(settings.max_file_gb * 2**30)
    if length and length.isdigit() and int(length) > limit + (1 << 20):
        raise TooLarge(f"the upload ({int(length) / 2**30:.2f} GiB) is larger than the limit "
                       f"of {settings.max_file_gb:g} GiB (max_file_gb)")
    intake = Intake(settings, clients.get().store)
    received = await multipart.receive(request.headers.get("content-type", ""), request.stream(),
                                       intake.new_upload)
    try:
        fields = received.fields
        accept(fields)
        priority = parse_priority(fields.get("priority", "normal"))
        hints = parse_hints(*(int_field(fields, k) for k in HINT_KEYS))
        options = parse_options(fields, settings)
        return await run_in_threadpool(lambda: Intake(settings, clients.get().store).take_upload(
            received.upload, priority, hints, options))
    finally:
        received.upload.close()


async def take_url(url: str, clients: Clients, priority: Priority, hints: SpeakerHints,
                   options: JobOptions) -> Job:
    """Downloaded here (api/fetch.py), then the same intake as an upload."""
    from diarized.api.fetch import download

    settings = clients.settings
    upload = await download(url, settings, Intake(settings, clients.get().store).new_upload)
    try:
        return await run_in_threadpool(lambda: Intake(settings, clients.get().store).take_upload(
            upload, priority, hints, options))
    finally:
        upload.close()


def take_path(clients: Clients, path: str, priority: str, hints: SpeakerHints,
              options: JobOptions = JobOptions()) -> Job:
    """A file on this server, copied (never moved) if it lies inside api_allowed_roots."""
    return clients.get().submit(allowed_file(clients.settings, path), parse_priority(priority), hints,
                                options=options)


def allowed_file(settings: Settings, text: str) -> Path:
    """A server-side path the API may copy from: a regular file whose real path (symlinks
    resolved) lies inside one of api_allowed_roots."""
    if "\x00" in text:
        raise ApiError(400, "bad_path", "the path contains a NUL byte; no file on this server has such a name")
    if not settings.api_allowed_roots:
        raise ApiError(403, "paths_disabled", "this server takes no server-side paths "
                       "(api_allowed_roots is empty): upload the file instead")
    real = Path(os.path.realpath(text))
    if not any(_inside(real, Path(os.path.realpath(root))) for root in settings.api_allowed_roots):
        raise ApiError(403, "path_not_allowed", f"{text} is outside the folders this server takes "
                       f"files from ({', '.join(map(str, settings.api_allowed_roots))})")
    if not real.is_file():
        raise ApiError(404, "no_such_file", f"{text} is not a file on this server")
    return real


def _inside(path: Path, root: Path) -> bool:
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == base or base in real.parents


def parse_priority(text: str) -> Priority:
    try:
        return Priority.parse(text)
    except ValueError as exc:
        raise ApiError(400, "bad_priority", str(exc)) from None


def int_field(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, "bad_field", f"{key} must be a whole number, not {value!r}") from None


def parse_hints(num: int | None, low: int | None, high: int | None) -> SpeakerHints:
    problems = speaker_hint_problems(num, low, high)
    if problems:
        raise ApiError(400, "bad_speaker_hints", "; ".join(problems))
    return SpeakerHints(num, low, high)
