"""Bearer tokens: `reactive token create NAME [--read-only]` prints a token once and
stores only its SHA-256; a request presents it as `Authorization: Bearer <token>`."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import Connection, delete, insert, select

from .._clock import as_utc
from .._entities.ids import check_id
from .._errors import ConfigError

metadata = sa.MetaData()

http_tokens = sa.Table(
    "http_tokens", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

TOKEN_PREFIX = "rct_"
"""Tokens start with this, so a leaked one is recognisable (secret scanners)."""


class Scope(StrEnum):
    """What a token may do: read, or read and write."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scope: Scope
    created_at: datetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_in(tx: Connection, name: str, scope: Scope, now: datetime) -> str:
    """A new token named `name` (stored hashed); the token itself, shown once."""
    name = check_id(name, "token name")
    if tx.execute(select(http_tokens.c.name).where(http_tokens.c.name == name)).first():
        raise ConfigError(f"a token named {name!r} exists: expected a new name (revoke the "
                          f"old one with `reactive token revoke {name}`)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tx.execute(insert(http_tokens).values(name=name, token_hash=digest(token),
                                          scope=Scope(scope).value, created_at=now))
    return token


def revoke_in(tx: Connection, name: str) -> bool:
    return bool(tx.execute(delete(http_tokens).where(http_tokens.c.name == name)).rowcount)


def list_in(tx: Connection) -> list[TokenInfo]:
    return [TokenInfo(name=r.name, scope=Scope(r.scope), created_at=as_utc(r.created_at))
            for r in tx.execute(select(http_tokens).order_by(http_tokens.c.name))]


def count_in(tx: Connection) -> int:
    return int(tx.execute(select(sa.func.count()).select_from(http_tokens)).scalar_one())


def verify_in(tx: Connection, token: str) -> TokenInfo | None:
    """The token's record when `token` is a stored one."""
    row = tx.execute(select(http_tokens).where(
        http_tokens.c.token_hash == digest(token))).first()
    if row is None:
        return None
    return TokenInfo(name=row.name, scope=Scope(row.scope), created_at=as_utc(row.created_at))
