"""The HTTP plugin's settings: `Host(config={"plugins": {"http": {...}}})`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HttpSettings(BaseModel):
    """Off in a library host; `reactive serve` turns it on (`--http`, `--no-http`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    listen: str = "127.0.0.1:8400"
    """`HOST:PORT` to bind (port 0: any free port, printed at start)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser page of theirs (none by default)."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    """The largest request body accepted (413 beyond)."""
