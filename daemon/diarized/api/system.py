"""/healthz, /system and /metrics: the service as a whole."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from diarized.api.access import Read
from diarized.api.clients import client_of
from diarized.api.errors import ApiError
from diarized.client import Client, seed_system_status
from diarized.store import StoreUnavailable

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz(client: Annotated[Client, Depends(client_of)]) -> dict:
    """Liveness of this service and whether the daemon is up (no token needed)."""
    try:
        up = client.store.daemon(15.0).up
    except StoreUnavailable as exc:
        raise ApiError(503, "store_unavailable", f"the job store cannot be read: {exc}")
    return {"status": "ok", "daemon_up": up}


@router.get("/system", dependencies=[Read])
def system(client: Annotated[Client, Depends(client_of)]) -> dict:
    """The seed's get_system_status(): active_jobs, resource_manager, orchestrator_stats, ...; and the
    Whisper models a job may ask for."""
    from diarized.options import offered_models

    settings = client.settings
    return seed_system_status(client.system_status(), settings.max_memory_gb) | {
        "counts": client.store.counts(), "models": offered_models(settings), "default_model": settings.model,
        "nodes": [n.to_dict() for n in client.store.nodes(15.0)]}


@router.get("/metrics", dependencies=[Read], response_class=Response)
def prometheus(request: Request) -> Response:
    """Prometheus text format: jobs by state and outcome, processing time and real-time factor by
    model, queue wait, worker RSS and the memory budget, webhook deliveries (a read token)."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
