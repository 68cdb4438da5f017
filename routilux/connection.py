"""Connection: one edge from a routine's event to another routine's slot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Connection:
    """``source_id.event -> target_id.slot``; every emit on the event reaches the slot once."""

    source_id: str
    event: str
    target_id: str
    slot: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source_id,
            "event": self.event,
            "target": self.target_id,
            "slot": self.slot,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Connection:
        return cls(data["source"], data["event"], data["target"], data["slot"])
