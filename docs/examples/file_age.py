"""A check strategy from another plugin: `file-age`, for jobs that touch a heartbeat file.

A batch job that writes (or `touch`es) a file each time it finishes is healthy while the
file is recent. The check is healthy while the file is younger than
`degraded_after_seconds`, degraded until `unhealthy_after_seconds`, and unhealthy after
that or when the file is missing.

Load the plugin class next to the health plugin, for both `reactive apply` (which
validates each check's `config` with the strategy's model) and `reactive serve` (which
runs it); each host creates its own instance:

    PYTHONPATH=docs/examples reactive apply --plugin file_age:FileAgeChecks -f backups.yaml
    PYTHONPATH=docs/examples reactive serve --plugin file_age:FileAgeChecks
"""

from __future__ import annotations

import time

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from health_plugin import CheckOutcome, HealthStatus, StrategyContext
from reactive_core import hookimpl


class FileAgeConfig(BaseModel):
    """The `config` of a `file-age` check; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1)
    degraded_after_seconds: float = Field(gt=0)
    unhealthy_after_seconds: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FileAgeConfig:
        if self.degraded_after_seconds > self.unhealthy_after_seconds:
            raise ValueError("degraded_after_seconds must not exceed unhealthy_after_seconds")
        return self


class FileAgeStrategy:
    """Judges a check by how long ago a file was last modified."""

    name = "file-age"
    config_model = FileAgeConfig

    async def run(self, config: FileAgeConfig, context: StrategyContext) -> CheckOutcome:
        """Never raises for a failing target: a missing file is an unhealthy outcome."""
        try:
            stat = await anyio.Path(config.path).stat()
        except OSError as exc:
            return CheckOutcome(status=HealthStatus.UNHEALTHY,
                                result={"error": f"{type(exc).__name__}: {exc.strerror}"})
        age = round(time.time() - stat.st_mtime, 3)
        if age >= config.unhealthy_after_seconds:
            status = HealthStatus.UNHEALTHY
        elif age >= config.degraded_after_seconds:
            status = HealthStatus.DEGRADED
        else:
            status = HealthStatus.HEALTHY
        return CheckOutcome(status=status, result={"age_seconds": age})


class FileAgeChecks:
    """Offers the `file-age` strategy through the health plugin's hook."""

    name = "file-age-checks"

    @hookimpl
    def reactive_health_strategies(self) -> list[FileAgeStrategy]:
        return [FileAgeStrategy()]
