"""What can go wrong with the audit log, as types a caller can tell apart."""

from __future__ import annotations


class AuditError(Exception):
    """Base of every audit log error."""


class AuditFieldRejected(AuditError, ValueError):
    """An entry's kind or fields break the ids-and-counts rule.

    The message names the field and what is wrong with it, never the value: a value
    refused for looking like content may be exactly the secret we must not print.
    """

    def __init__(self, field: str | None, reason: str) -> None:
        self.field = field
        self.reason = reason
        where = "kind" if field is None else f"field {field}"
        super().__init__(f"audit {where}: {reason}")


class AuditLogCorrupt(AuditError):
    """The files on disk are not a log this key wrote: refused rather than guessed at."""


class AuditPermissionError(AuditError):
    """The audit directory or a file in it is not ours alone (mode, owner, or type)."""


class AuditWriteError(AuditError):
    """An append failed and was rolled back: the entry is not in the log."""


class AuditLogUnavailable(AuditError):
    """The log is closed, or a failed rollback left it unsafe to append to."""
