"""Job status and the only legal ways it changes.

::

    pending ──> running ──> completed
       │           ├──────> failed
       │           └──────> cancelled
       └──> failed | cancelled
"""

from __future__ import annotations

from enum import Enum


class ExecutionStatus(str, Enum):
    """Status of one job. Compares equal to its string value (``status == "completed"``)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and cancelled: nothing runs after these."""
        return self in TERMINAL_STATUSES


#: Statuses after which a job never runs again.
TERMINAL_STATUSES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)

#: Allowed transitions; anything else is a bug in the runtime.
LEGAL_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset(
        {ExecutionStatus.RUNNING, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
    ),
    ExecutionStatus.RUNNING: TERMINAL_STATUSES,
    ExecutionStatus.COMPLETED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}


def check_transition(old: ExecutionStatus, new: ExecutionStatus) -> None:
    """Raise ``ValueError`` unless ``old -> new`` is a legal status change."""
    if new not in LEGAL_TRANSITIONS[old]:
        raise ValueError(f"illegal job status change {old.value} -> {new.value}")
