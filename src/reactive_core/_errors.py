"""The exception tree: every error the framework raises derives from `ReactiveCoreError`."""

from __future__ import annotations


class ReactiveCoreError(Exception):
    """Base of every error raised by reactive-core; messages say what was received and expected."""


class RegistryError(ReactiveCoreError):
    """A plugin declared something invalid while registering (kinds, derivers, subscriptions)."""


class DuplicateRegistration(RegistryError):
    """Something that must be unique (a kind, a job, a table, a mapper) was declared twice."""


class UnknownEntityKind(ReactiveCoreError, LookupError):
    """A kind was named that no plugin defined."""


class InvalidEntityState(ReactiveCoreError, ValueError):
    """A state failed validation against its kind's model; the transaction was rolled back."""

    def __init__(self, message: str, *, kind: str, entity_id: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.kind = kind
        self.entity_id = entity_id
        self.fields = fields


class PluginLoadError(ReactiveCoreError):
    """A plugin could not be imported or registered; the host refuses to start."""


class ConfigError(ReactiveCoreError, ValueError):
    """Operator configuration (a file, an option, an environment variable) is malformed."""


class DeliveryNotFound(ReactiveCoreError, LookupError):
    """A delivery id was named that does not exist (or is not in the expected status)."""


class InvalidIdentifier(ReactiveCoreError, ValueError):
    """An id or a name broke the identifier rule (printable, trimmed, not too long)."""


class TransactionEnded(ReactiveCoreError):
    """A unit of work went on after its transaction had ended: on SQLite a statement with
    a ROLLBACK conflict resolution (`ON CONFLICT ROLLBACK`, `INSERT OR ROLLBACK`,
    `RAISE(ROLLBACK, ...)`) failed, SQLite rolled back the whole transaction, and the
    unit caught the error. Nothing of the unit was written."""


class DatabaseBusy(ReactiveCoreError):
    """The database stayed locked by another writer past the busy timeout.

    Nothing was written; the operation may be retried (`retryable` is True).
    """

    retryable = True
