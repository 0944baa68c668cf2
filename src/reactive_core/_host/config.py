"""A host's tunables (`HostConfig`) and each plugin's own settings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _problems(exc: ValidationError, prefix: str = "") -> str:
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in e['loc']) or '<settings>'}: {e['msg']} "
        f"(received {e.get('input')!r})" for e in exc.errors())


class HostConfig(BaseModel):
    """Tunables of a host; each can also be set as `REACTIVE_<NAME>` in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: float = Field(30.0, gt=0, description="age after which logs are pruned")
    lease_seconds: float = Field(30.0, gt=0, description="work-queue lease length")
    retry_base_seconds: float = Field(1.0, ge=0, description="first retry backoff")
    retry_max_seconds: float = Field(300.0, ge=0, description="backoff ceiling")
    poll_interval: float = Field(1.0, gt=0, description="backstop poll of feed, queue, timers")
    dispatch_concurrency: int = Field(
        256, ge=1, description="work-queue handlers running at once on this instance (also the "
                              "most one claim round takes)")
    dispatch_batch_delay: float = Field(
        0.01, ge=0, description="seconds a woken dispatcher waits to gather a burst into one round")
    handler_timeout_seconds: float = Field(
        300.0, gt=0, description="longest run of a work-queue handler (WorkQueue(timeout_seconds=) "
                                 "overrides it); overrunning is a failed attempt")
    broadcast_timeout_seconds: float = Field(
        30.0, gt=0, description="longest run of a broadcast handler; overrunning is logged")
    shutdown_timeout_seconds: float = Field(
        30.0, ge=0, description="how long stopping waits for running handlers before it "
                                "cancels them")
    busy_timeout_seconds: float = Field(
        10.0, ge=0, description="SQLite: how long a write waits for another process's lock "
                                "before it fails with DatabaseBusy")
    config_max_bytes: int = Field(
        1024 * 1024, ge=1, description="largest config file `reactive apply` reads, in bytes")
    pool_size: int = Field(
        10, ge=1, description="PostgreSQL connections kept; at most this many units of work "
                              "run at once")
    run_jobs: bool = Field(True, description="run scheduled jobs on this instance")
    workers: bool = Field(
        True, description="run the broadcast feed, the work-queue dispatcher, timers and jobs "
                          "here; False for a client that only reads and writes (CLI commands)")
    migrate: bool = Field(
        True, description="at start-up, apply pending schema migrations (the core's and each "
                          "plugin's version history) under a cluster-wide lock; False refuses "
                          "to start on a database that is behind, for deployments that run "
                          "`reactive db upgrade` as a step of their own")
    plugins: dict[str, Any] = Field(default_factory=dict, description="per-plugin settings")

    @classmethod
    def load(cls, config: HostConfig | Mapping[str, Any] | None) -> HostConfig:
        """Merge environment variables and `config`, with a clear error on bad values."""
        if isinstance(config, HostConfig):
            return config
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"REACTIVE_{name.upper()}")
            if env is not None and name != "plugins":  # REACTIVE_PLUGINS is the allow-list
                values[name] = env
        plugin_settings = os.environ.get("REACTIVE_PLUGIN_SETTINGS")
        if plugin_settings:
            try:
                values["plugins"] = json.loads(plugin_settings)
            except ValueError as exc:
                raise ConfigError(
                    f"REACTIVE_PLUGIN_SETTINGS is not valid JSON ({exc}): expected an object "
                    f'of per-plugin settings such as {{"health": {{"max_concurrency": 8}}}}'
                ) from exc
        for key, value in (config or {}).items():
            if key == "plugins" and isinstance(value, Mapping) and isinstance(
                    values.get("plugins"), dict):
                # Per plugin, what the caller gives wins over the environment's, key by key.
                merged = dict(values["plugins"])
                for name, settings in value.items():
                    base = merged.get(name)
                    merged[name] = ({**base, **settings} if isinstance(base, dict)
                                    and isinstance(settings, Mapping) else settings)
                values["plugins"] = merged
            else:
                values[key] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"host configuration is invalid: {_problems(exc)}") from exc

    def plugin_settings(self, name: str, model: type[M]) -> M:
        """`plugins[name]` validated as `model` (its defaults when absent), or a clear error."""
        raw = self.plugins.get(name) or {}
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(
                f"settings of plugin {name!r} (host config plugins.{name}) are invalid: "
                f"{_problems(exc, f'plugins.{name}.')}; expected keys among "
                f"{', '.join(model.model_fields)}") from exc
