"""The one ContextVar through which running logic reaches its activation.

``Routine.emit`` and ``JobState`` look here to learn which job and routine the calling
thread is working for, so nothing per-job is ever written onto shared objects.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routilux.routine import Routine
    from routilux.runtime.job_run import JobRun


class ActivationContext:
    """Everything one running activation accumulates until it commits.

    Emits and state writes are buffered here and applied to the job in one step when
    the activation ends, so a checkpoint never shows half an activation.
    """

    __slots__ = (
        "emit_counts",
        "emits",
        "log_items",
        "routine",
        "routine_id",
        "routine_writes",
        "run",
        "shared_keys",
    )

    def __init__(self, run: JobRun, routine_id: str, routine: Routine) -> None:
        self.run = run
        self.routine_id = routine_id
        self.routine = routine
        self.emits: list[tuple[str, dict[str, Any]]] = []
        self.emit_counts: dict[tuple[str, str], int] = {}
        self.routine_writes: list[tuple[str, dict[str, Any]]] = []
        self.shared_keys: set[Any] = set()
        self.log_items: list[Any] = []


current_activation: ContextVar[ActivationContext | None] = ContextVar(
    "routilux_current_activation", default=None
)
