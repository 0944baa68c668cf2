"""Errors as RFC 9457 problem documents: `application/problem+json` with `type`,
`title`, `status`, `detail` and, for bad input, the fields at fault."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .._errors import (
    ConfigError,
    DeliveryNotFound,
    InvalidEntityState,
    InvalidIdentifier,
    ReactiveCoreError,
    UnknownEntityKind,
)

PROBLEM_TYPE = "https://reactive-core.dev/problems/"
"""Base of the `type` URIs (one per kind of problem; documented in the reference)."""


def problem(status: int, title: str, detail: str, *, kind: str,
            errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem document response."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE + kind, "title": title, "status": status,
                            "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers,
                        media_type="application/problem+json")


def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "(body)",
               "message": e.get("msg", "")} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid request", detail, kind="invalid-request", errors=errors)


def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not found",
              405: "Method not allowed", 413: "Request too large"}
    kind = {401: "unauthorized", 403: "forbidden", 404: "not-found",
            413: "too-large"}.get(exc.status_code, "http-error")
    return problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail),
                   kind=kind, headers=dict(exc.headers or {}))


def _core(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, (UnknownEntityKind, DeliveryNotFound, LookupError)):
        return problem(404, "Not found", str(exc), kind="not-found")
    if isinstance(exc, InvalidEntityState):
        return problem(422, "Invalid state", str(exc), kind="invalid-state",
                       errors=[{"field": f, "message": str(exc)} for f in exc.fields])
    if isinstance(exc, (ConfigError, InvalidIdentifier, ValueError)):
        return problem(422, "Invalid input", str(exc), kind="invalid-input")
    return problem(500, "Server error", str(exc), kind="server-error")


def install(app: FastAPI) -> None:
    """Make every error of `app` a problem document."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ReactiveCoreError, _core)
