"""The seed's REST API, kept as documented aliases of /jobs: POST /process and GET /status/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from diarized.api.access import Read, Submit
from diarized.api.clients import client_of, clients_of
from diarized.api.job_views import job_out
from diarized.api.models import SeedProcess
from diarized.api.submission import take_path
from diarized.client import Client
from diarized.store import SpeakerHints

router = APIRouter(tags=["seed"])


@router.post("/process", status_code=202, dependencies=[Submit])
def seed_process(body: SeedProcess, request: Request) -> dict:
    """The seed's POST /process: {file_path} -> {job_id}. Same as POST /jobs with a `path`;
    outputs go to the outbox (GET /jobs/{id}/outputs), so output_dir is ignored."""
    job = take_path(clients_of(request), body.file_path, body.priority, SpeakerHints())
    return {"job_id": job.id, "status": job.status}


@router.get("/status/{job_id}", dependencies=[Read])
def seed_status(job_id: str, client: Annotated[Client, Depends(client_of)]) -> dict:
    """The seed's GET /status/<job_id>: the job with the seed's `status` word (a duplicate
    reports the job it duplicates)."""
    job = client.get(job_id)
    followed = client.resolve(job.id)
    return job_out(client, followed).model_dump() | {"job_id": job.id, "status": followed.status,
                                                     "duplicate_of": job.duplicate_of}
