"""The error a malformed rule raises."""

from __future__ import annotations

from .._errors import ReactiveCoreError


class RuleError(ReactiveCoreError, ValueError):
    """A rule is malformed: `path` and `line` name where, the message what was expected."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 rule_id: str | None = None, where: tuple[str | int, ...] = ()) -> None:
        self.path = path
        self.line = line
        self.rule_id = rule_id
        self.where = where
        """The keys and indexes leading to the offending part inside the rule."""
        self.detail = message
        place = path or "<rules>"
        if line is not None:
            place = f"{place}:{line}"
        prefix = f"{place}: " if path is not None or line is not None else ""
        if rule_id is not None:
            prefix = f"{prefix}rule {rule_id!r}: "
        super().__init__(f"{prefix}{message}")
