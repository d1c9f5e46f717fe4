"""The HTTP API's JSON shapes: a documented contract (OpenAPI at /docs), not the store's columns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from diarized.store import Event, Job


class Speakers(BaseModel):
    num: int | None = Field(None, description="exact count, if given")
    min: int | None = Field(None, description="floor, if given")
    max: int | None = Field(None, description="ceiling, if given (0: none)")


class SpeakerFound(BaseModel):
    label: str = Field(description="the machine's label (SPEAKER_00); never renamed")
    name: str = Field(description="the name the transcript shows now")
    seconds: float = Field(description="speech time")


class JobOut(BaseModel):
    id: str
    short_id: str
    file: str = Field(description="the name the file was submitted with")
    state: str = Field(description="incoming, queued, running, succeeded, failed, cancelled, duplicate")
    status: str = Field(description="the seed's word: queued, processing, completed, failed, cancelled, duplicate")
    priority: str
    stage: str | None
    progress: float
    eta_seconds: float | None
    duration: float | None = Field(description="seconds of audio, once decoded")
    attempts: int
    max_attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    processing_seconds: float | None
    real_time_factor: float | None
    peak_rss_mb: float | None
    speakers: Speakers
    options: dict[str, Any] = Field(description="options given with this file: language, model, formats, "
                                    "initial_prompt, hotwords ({}: the server's configuration)")
    error_type: str | None
    error: str | None
    hint: str | None = Field(description="what to do about the error")
    duplicate_of: str | None
    cancel_requested: bool
    model: str | None = Field(description="the Whisper model of its last attempt")
    node: str | None = Field(description="the node that runs it, or ran its last attempt")
    language: str | None = Field(description="the language transcribed (detected or configured), once succeeded")
    language_probability: float | None
    word_count: int | None
    speakers_found: list[SpeakerFound] | None = Field(
        description="who spoke, in order of first speech, with speech time and current names; once succeeded")
    links: dict[str, str] = Field(description="self, and once there are outputs: outputs and archive (a zip); "
                                  "absolute under api_public_url when it is set")

    @classmethod
    def of(cls, job: Job, base: str = "", results: Job | None = None) -> "JobOut":
        """`base`: api_public_url (links become absolute); `results`: the job whose results to show
        (a duplicate shows its original's)."""
        rtf = job.processing_seconds / job.duration if job.processing_seconds and job.duration else None
        results = results or job
        links = {"self": f"{base}/jobs/{job.id}"}
        if job.state in ("succeeded", "duplicate"):  # a duplicate's are its original's
            links["outputs"] = f"{base}/jobs/{job.id}/outputs"
            links["archive"] = f"{base}/jobs/{job.id}/outputs.zip"
        return cls(id=job.id, short_id=job.short_id, file=job.source_name, state=job.state, status=job.status,
                   priority=job.priority_name, stage=job.stage, progress=job.progress,
                   eta_seconds=job.eta_seconds, duration=job.duration, attempts=job.attempts,
                   max_attempts=job.max_attempts, created_at=job.created_at, started_at=job.started_at,
                   finished_at=job.finished_at, processing_seconds=job.processing_seconds,
                   real_time_factor=rtf, peak_rss_mb=job.peak_rss_mb,
                   speakers=Speakers(num=job.num_speakers, min=job.min_speakers, max=job.max_speakers),
                   options=job.options or {},
                   error_type=job.error_type, error=job.error, hint=job.hint, duplicate_of=job.duplicate_of,
                   cancel_requested=bool(job.cancel_requested), model=results.model, node=job.node,
                   language=results.language,
                   language_probability=results.language_probability, word_count=results.word_count,
                   speakers_found=results.speakers_found, links=links)


class EventOut(BaseModel):
    at: float
    kind: str
    detail: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> "EventOut":
        return cls(at=event.at, kind=event.kind, detail=event.detail, data=event.data)


class OutputOut(BaseModel):
    name: str
    size: int
    url: str


class JobDetail(JobOut):
    """The job with its timeline and files: what POST /jobs and GET /jobs/{id} both answer."""

    events: list[EventOut]
    outputs: list[OutputOut]


class JobPage(BaseModel):
    jobs: list[JobOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="pass as offset for the next page; null on the last")


class PathSubmission(BaseModel):
    """POST /jobs with JSON: a file already on this server, inside api_allowed_roots (`path`), or one
    this server downloads from a host in api_url_hosts (`url`)."""

    path: str | None = Field(None, description="a file on this server, inside api_allowed_roots")
    url: str | None = Field(None, max_length=4096, description="an http(s) URL on a host in api_url_hosts")
    priority: str = "normal"
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    language: str | None = Field(None, description="auto, or a Whisper language code (pt, en, ...)")
    model: str | None = Field(None, description="a Whisper model this server offers (GET /system: models)")
    formats: list[str] | None = Field(None, description="json, srt, vtt, txt, rttm, csv, tsv, docx")
    initial_prompt: str | None = Field(None, max_length=1000)
    hotwords: str | None = Field(None, max_length=1000)


class SeedProcess(BaseModel):
    """The seed's POST /process body. Outputs always go to the outbox: output_dir is accepted and ignored."""

    file_path: str
    output_dir: str | None = None
    priority: str = "normal"


class PriorityChange(BaseModel):
    priority: str = Field(description="high, normal or low")


class Deleted(BaseModel):
    id: str
    file: str
    state: str = Field(description="the state it was in")
    removed: int = Field(description="files and folders removed (outputs, original, work folder)")
    bytes: int
    problems: list[str] = Field(description="paths that could not be removed, and why (the records are gone)")


class ErrorOut(BaseModel):
    error: dict[str, str] = Field(description="{code, message}")
