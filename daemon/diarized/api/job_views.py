"""What the API answers about a job: its shape, its files, one file, all of them as a zip.

Shared by the JSON routes (jobs.py) and the dashboard; files are only ever the job's
own published ones, opened below the outbox without following a link (serve.py).
"""

from __future__ import annotations

from pathlib import Path

from diarized.api.errors import ApiError
from diarized.api.models import EventOut, JobDetail, JobOut, OutputOut
from diarized.api.serve import NotServable, open_owned
from diarized.client import Client
from diarized.nofollow import Opened
from diarized.store import Job, State

MEDIA_TYPES = {".json": "application/json", ".srt": "application/x-subrip", ".vtt": "text/vtt",
               ".txt": "text/plain; charset=utf-8", ".rttm": "text/plain; charset=utf-8",
               ".csv": "text/csv; charset=utf-8", ".tsv": "text/tab-separated-values; charset=utf-8",
               ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
               ".zip": "application/zip"}


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix, "application/octet-stream")


def job_out(client: Client, job: Job) -> JobOut:
    """The job as the API shows it: links under api_public_url, a duplicate with its original's results."""
    results = client.resolve(job.id) if job.state == State.DUPLICATE else None
    return JobOut.of(job, client.settings.api_public_url.rstrip("/"), results)


def job_detail(client: Client, job: Job) -> JobDetail:
    """What POST /jobs and GET /jobs/{id} both answer: the job, its timeline and its files."""
    return JobDetail(**job_out(client, job).model_dump(), events=[EventOut.of(e) for e in client.events(job.id)],
                     outputs=outputs_of(client, job))


def outputs_of(client: Client, job: Job) -> list[OutputOut]:
    """The job's files; a duplicate's are its original's, with the original's URLs (by reference).
    Absolute under api_public_url when it is set."""
    owner = client.resolve(job.id)
    base = client.settings.api_public_url.rstrip("/")
    return [OutputOut(name=name, size=path.lstat().st_size, url=f"{base}/jobs/{owner.id}/outputs/{name}")
            for name, path in client.outputs(owner.id).items()]


def output_file(client: Client, job_id: str, name: str) -> tuple[Opened, Path]:
    """A published file of the job (or of the job it duplicates), by a name from its own list."""
    job = client.resolve(job_id)
    files = client.outputs(job.id)
    path = files.get(name)
    try:
        if path is None:
            raise NotServable(name)
        return open_owned((client.settings.outbox,), path), path
    except NotServable:
        raise ApiError(404, "no_such_output", f"job {job.id} has no output {name!r}; "
                       f"it has: {', '.join(files) or 'none (not succeeded)'}") from None


def outputs_archive(client: Client, job_id: str) -> tuple[Opened, str]:
    """The job's files (or its original's, for a duplicate) as a zip, and the zip's file name."""
    from diarized.api import archive

    job = client.get(job_id)
    files = client.outputs(job.id)
    if not files:
        raise ApiError(404, "no_outputs", f"job {job.id} is {job.state}: it has no outputs to download")
    top = f"{Path(job.source_name).stem or 'job'}-{job.short_id}"
    try:
        return archive.build(client.settings.outbox, files, top), f"{top}.zip"
    except NotServable:
        raise ApiError(404, "no_outputs", f"the outputs of job {job.id} changed while they were read; "
                       "try again") from None
