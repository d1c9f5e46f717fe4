"""/jobs: submit, list, read, change and delete jobs, and fetch their outputs (the JSON API)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from diarized.api.access import Read, Submit
from diarized.api.clients import client_of, clients_of
from diarized.api.errors import ApiError
from diarized.api.job_views import job_detail, job_out, media_type, output_file, outputs_archive, outputs_of
from diarized.api.models import Deleted, ErrorOut, JobDetail, JobOut, JobPage, OutputOut, PathSubmission, PriorityChange
from diarized.api.serve import DescriptorResponse
from diarized.api.submission import parse_hints, parse_priority, take_multipart, take_path, take_url
from diarized.client import Client
from diarized.options import KEYS as OPTION_KEYS
from diarized.options import parse as parse_options
from diarized.store import JobQuery, State

router = APIRouter()

MULTIPART_FIELDS = {
    "file": {"type": "string", "format": "binary"},
    "priority": {"type": "string", "enum": ["high", "normal", "low"]},
    "num_speakers": {"type": "integer"}, "min_speakers": {"type": "integer"}, "max_speakers": {"type": "integer"},
    "language": {"type": "string", "description": "auto, or a Whisper code: pt, en, ..."},
    "model": {"type": "string", "description": "a model this server offers (GET /system)"},
    "formats": {"type": "string", "description": "comma-separated: json,srt,vtt,txt,rttm,csv,tsv,docx"},
    "initial_prompt": {"type": "string"}, "hotwords": {"type": "string"}}


@router.post("/jobs", status_code=202, response_model=JobDetail, tags=["jobs"], dependencies=[Submit],
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                    "properties": MULTIPART_FIELDS}},
                 "application/json": {"schema": PathSubmission.model_json_schema()}}}},
             responses={413: {"model": ErrorOut}, 400: {"model": ErrorOut}})
async def submit(request: Request) -> JSONResponse:
    """Upload a recording (multipart, streamed to disk, at most max_file_gb), name a file on this
    server inside api_allowed_roots (JSON `path`) or a URL on a host in api_url_hosts (JSON `url`).
    Options (language, model, formats, initial_prompt, hotwords) and speaker hints go with any of
    them; they are checked before anything is kept. The job exists when this answers."""
    clients = clients_of(request)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = PathSubmission.model_validate_json(await request.body())
        except ValidationError as exc:
            raise ApiError(400, "bad_request", "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())) from None
        if (body.path is None) == (body.url is None):
            raise ApiError(400, "bad_request", "give either `path` (a file on this server) or `url`")
        hints = parse_hints(body.num_speakers, body.min_speakers, body.max_speakers)
        options = parse_options(body.model_dump(include=set(OPTION_KEYS)), clients.settings)
        if body.url is not None:
            job = await take_url(body.url, clients, parse_priority(body.priority), hints, options)
        else:
            job = await run_in_threadpool(take_path, clients, body.path, body.priority, hints, options)
    else:
        job = await take_multipart(request, clients)
    detail = await run_in_threadpool(job_detail, clients.get(), job)
    return JSONResponse(detail.model_dump(), status_code=202, headers={"Location": f"/jobs/{job.id}"})


@router.get("/jobs", response_model=JobPage, tags=["jobs"], dependencies=[Read])
def list_jobs(client: Annotated[Client, Depends(client_of)],
              q: Annotated[str, Query(max_length=500, description="words in file names, speaker names and "
                                                                 "transcripts (all of them)")] = "",
              state: Annotated[list[State] | None, Query()] = None,
              language: str | None = None, model: str | None = None,
              speaker: Annotated[str | None, Query(max_length=100)] = None,
              since: Annotated[float | None, Query(description="created at or after (unix time)")] = None,
              until: Annotated[float | None, Query(description="created before (unix time)")] = None,
              sort: Annotated[Literal["newest", "oldest", "longest", "name"], Query()] = "newest",
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> JobPage:
    """Find jobs: `q` searches file names, speaker names and transcripts; filter by `state` (repeatable),
    `language`, `model`, `speaker`, `since`/`until`; `sort`; page with `offset` (next_offset)."""
    query = JobQuery(text=q, states=tuple(state or ()), language=language, model=model, speaker=speaker,
                     since=since, until=until, sort=sort, limit=limit + 1, offset=offset)
    jobs = client.store.search(query)
    return JobPage(jobs=[job_out(client, j) for j in jobs[:limit]], limit=limit, offset=offset,
                   next_offset=offset + limit if len(jobs) > limit else None)


@router.get("/jobs/{job_id}", response_model=JobDetail, tags=["jobs"], dependencies=[Read],
            responses={404: {"model": ErrorOut}})
def get_job(job_id: str, client: Annotated[Client, Depends(client_of)]) -> JobDetail:
    """State, stage, progress, ETA, results, the events timeline and the outputs (full or short id)."""
    return job_detail(client, client.get(job_id))


@router.get("/jobs/{job_id}/outputs", response_model=list[OutputOut], tags=["outputs"], dependencies=[Read])
def list_outputs(job_id: str, client: Annotated[Client, Depends(client_of)]) -> list[OutputOut]:
    return outputs_of(client, client.get(job_id))


@router.get("/jobs/{job_id}/outputs.zip", tags=["outputs"], dependencies=[Read],
            response_class=FileResponse, responses={404: {"model": ErrorOut}})
def get_archive(job_id: str, client: Annotated[Client, Depends(client_of)]) -> FileResponse:
    """Every published file of the job in one zip, under a folder named after the recording."""
    opened, name = outputs_archive(client, job_id)
    return DescriptorResponse(opened, filename=name, media_type="application/zip")


@router.get("/jobs/{job_id}/outputs/{name:path}", tags=["outputs"], dependencies=[Read],
            response_class=FileResponse, responses={404: {"model": ErrorOut}})
def get_output(job_id: str, name: str, client: Annotated[Client, Depends(client_of)]) -> FileResponse:
    """One published file, by a name from the job's own list (nothing else is reachable)."""
    opened, path = output_file(client, job_id, name)
    return DescriptorResponse(opened, filename=path.name, media_type=media_type(path))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"], dependencies=[Submit])
def cancel(job_id: str, client: Annotated[Client, Depends(client_of)]) -> JobOut:
    """A queued job is cancelled at once, a running one at its worker's next check (about a second)."""
    return job_out(client, client.cancel(job_id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"], dependencies=[Submit])
def retry(job_id: str, client: Annotated[Client, Depends(client_of)]) -> JobOut:
    return job_out(client, client.retry(job_id))


@router.delete("/jobs/{job_id}", response_model=Deleted, tags=["jobs"], dependencies=[Submit],
               responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def delete_job(job_id: str, client: Annotated[Client, Depends(client_of)]) -> Deleted:
    """Remove a job that is not running: its outputs, its original (done/ or failed/) and its
    records. No undo; a running job answers 409 (cancel it first). A duplicate of it keeps its
    own record, without outputs."""
    from diarized import retention

    job, removed = retention.delete(client.settings, client.store, job_id)
    return Deleted(id=job.id, file=job.source_name, state=job.state, removed=len(removed.paths),
                   bytes=removed.bytes, problems=removed.problems)


@router.post("/jobs/{job_id}/priority", response_model=JobOut, tags=["jobs"], dependencies=[Submit])
def set_priority(job_id: str, change: PriorityChange, client: Annotated[Client, Depends(client_of)]) -> JobOut:
    return job_out(client, client.set_priority(job_id, parse_priority(change.priority)))
