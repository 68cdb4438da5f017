"""Slot: a routine's named input port (the declaration; queues live per job)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Slot:
    """An input port declared with ``Routine.define_slot``.

    ``max_queue_length`` bounds how many unconsumed data points one job may hold in this
    slot; an emit that would exceed it raises ``SlotQueueFullError`` in the emitter.
    Crossing ``watermark`` (a fraction of the maximum) logs a warning once per job, an
    early sign of a consumer that cannot keep up.
    """

    name: str
    max_queue_length: int = 1000
    watermark: float = 0.8
    #: Queue length at which the watermark warning fires (derived).
    watermark_length: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if self.max_queue_length < 1:
            raise ValueError(f"slot {self.name!r}: max_queue_length must be >= 1")
        if not 0.0 < self.watermark <= 1.0:
            raise ValueError(f"slot {self.name!r}: watermark must be in (0, 1]")

        # Cached: checked on every delivery.
        object.__setattr__(
            self, "watermark_length", max(1, int(self.max_queue_length * self.watermark))
        )
