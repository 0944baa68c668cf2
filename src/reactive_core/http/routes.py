"""The core's own routes: readiness, entities, the logs, deliveries, config, rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from .auth import host_of

router = APIRouter()


@router.get("/healthz", tags=["operations"], summary="Readiness")
async def healthz(request: Request) -> JSONResponse:
    """200 when the database answers and the host's workers run, else 503."""
    host = host_of(request)
    problems: list[str] = []
    try:
        await host.read(lambda tx: tx.execute(text("SELECT 1")).scalar())
    except Exception as exc:  # noqa: BLE001 - reported as not ready
        problems.append(f"database: {type(exc).__name__}: {exc}")
    if not host.running:
        problems.append("workers: not running")
    body: dict[str, Any] = {"status": "ok" if not problems else "unavailable",
                            "instance": host.instance_id, "problems": problems}
    return JSONResponse(body, status_code=200 if not problems else 503)
