"""Plain records kept in a JobState: errors and the execution history."""

from __future__ import annotations

import traceback as tb
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class ErrorInfo:
    """One recorded error: what was raised, where, and on which attempt."""

    type: str
    message: str
    traceback: str = ""
    routine_id: str | None = None
    attempt: int = 0
    at: str = field(default_factory=lambda: utc_now().isoformat())

    @classmethod
    def from_exception(
        cls, exc: BaseException, routine_id: str | None = None, attempt: int = 0
    ) -> ErrorInfo:
        text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type(exc).__name__, str(exc), text, routine_id, attempt)

    def __str__(self) -> str:
        where = f" in routine {self.routine_id!r}" if self.routine_id else ""
        return f"{self.type}{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
