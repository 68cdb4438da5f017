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


def iso_from_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


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


@dataclass(frozen=True)
class ExecutionRecord:
    """One finished activation: routine, outcome (ok, error, retry, skipped), timing."""

    routine_id: str
    outcome: str
    attempt: int
    started_at: float
    finished_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "routine_id": self.routine_id,
            "outcome": self.outcome,
            "attempt": self.attempt,
            "started_at": iso_from_epoch(self.started_at),
            "finished_at": iso_from_epoch(self.finished_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionRecord:
        def epoch(text: str) -> float:
            moment = from_iso(text)
            return moment.timestamp() if moment else 0.0

        return cls(
            data["routine_id"],
            data["outcome"],
            int(data.get("attempt", 0)),
            epoch(data["started_at"]),
            epoch(data["finished_at"]),
        )
