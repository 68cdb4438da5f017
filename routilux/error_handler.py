"""What happens when a routine's logic raises: strategies, the handler, the decision.

Example::

    >>> from routilux import ErrorHandler, ErrorStrategy
    >>> handler = ErrorHandler(ErrorStrategy.RETRY, max_retries=2, retry_delay=0.5)
    >>> decide(handler, attempt=0, exc=TimeoutError()).action
    <Action.RETRY: 'retry'>
    >>> decide(handler, attempt=2, exc=TimeoutError()).action
    <Action.FAIL: 'fail'>
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from routilux.imports import import_path, path_of


class ErrorStrategy(str, Enum):
    """How a job reacts when one of its activations raises."""

    STOP = "stop"
    """The job fails; nothing new starts."""
    CONTINUE = "continue"
    """The error is recorded; the activation's emits so far are delivered (none if the error
    was a full slot, since delivering would overflow it); the job goes on."""
    SKIP = "skip"
    """The routine is skipped for the rest of the job; data sent to it is discarded."""
    RETRY = "retry"
    """The same activation runs again after a backoff delay, up to ``max_retries`` times."""


class Action(str, Enum):
    """The runtime's next step for a failed activation (the outcome of ``decide``)."""

    FAIL = "fail"
    CONTINUE = "continue"
    SKIP = "skip"
    RETRY = "retry"


@dataclass(frozen=True)
class Decision:
    """``action`` to take; ``delay`` in seconds before a retry."""

    action: Action
    delay: float = 0.0


class ErrorHandler:
    """Error policy for a routine (``routine.set_error_handler``) or a whole flow.

    Args:
        strategy: see ``ErrorStrategy``; STOP by default.
        max_retries: RETRY only: retries after the first attempt.
        retry_delay: RETRY only: seconds before the first retry.
        retry_backoff: RETRY only: each further retry waits this factor longer.
        retryable_exceptions: RETRY only: exception types worth retrying (default: any
            ``Exception``); anything else fails the job at once.
        is_critical: with CONTINUE or SKIP, the job still runs to the end but is marked
            ``failed`` instead of ``completed``, because this routine's output was lost.

    Counters live in the job, not here, so one handler serves any number of jobs.
    """

    def __init__(
        self,
        strategy: ErrorStrategy | str = ErrorStrategy.STOP,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        retryable_exceptions: Sequence[type[BaseException]] | None = None,
        is_critical: bool = False,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if retry_delay < 0 or retry_backoff < 1:
            raise ValueError("retry_delay must be >= 0 and retry_backoff >= 1")
        self.strategy = ErrorStrategy(strategy)
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.retry_backoff = retry_backoff
        self.retryable_exceptions: tuple[type[BaseException], ...] = tuple(
            retryable_exceptions or (Exception,)
        )
        self.is_critical = is_critical

    def __repr__(self) -> str:
        return (
            f"ErrorHandler(strategy={self.strategy.name}, max_retries={self.max_retries}, "
            f"retry_delay={self.retry_delay}, retry_backoff={self.retry_backoff}, "
            f"is_critical={self.is_critical})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Describe this handler in plain JSON (exception types by import path)."""
        return {
            "strategy": self.strategy.value,
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
            "retry_backoff": self.retry_backoff,
            "retryable_exceptions": [path_of(t) for t in self.retryable_exceptions],
            "is_critical": self.is_critical,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorHandler:
        """Rebuild a handler made by ``to_dict``."""
        types = [import_path(p) for p in data.get("retryable_exceptions", [])]
        return cls(
            strategy=data.get("strategy", "stop"),
            max_retries=data.get("max_retries", 3),
            retry_delay=data.get("retry_delay", 1.0),
            retry_backoff=data.get("retry_backoff", 2.0),
            retryable_exceptions=types or None,
            is_critical=data.get("is_critical", False),
        )


def backoff(handler: ErrorHandler, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt + 1``."""
    return float(handler.retry_delay * handler.retry_backoff**attempt)


def decide(handler: ErrorHandler, attempt: int, exc: BaseException) -> Decision:
    """Pure decision for an activation that raised ``exc`` on try number ``attempt`` (0-based)."""
    strategy = handler.strategy
    if strategy is ErrorStrategy.CONTINUE:
        return Decision(Action.CONTINUE)
    if strategy is ErrorStrategy.SKIP:
        return Decision(Action.SKIP)
    if strategy is ErrorStrategy.RETRY:
        retryable = isinstance(exc, handler.retryable_exceptions)
        if retryable and attempt < handler.max_retries:
            return Decision(Action.RETRY, backoff(handler, attempt))
    return Decision(Action.FAIL)
