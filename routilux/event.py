"""Event: a routine's named output port."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routilux.errors import EmitError


@dataclass(frozen=True)
class Event:
    """An output port declared with ``Routine.define_event``.

    ``output_params`` lists the parameter names an emit may carry; an empty tuple
    accepts any parameters.
    """

    name: str
    output_params: tuple[str, ...] = ()

    def check_params(self, routine_name: str, params: Mapping[str, Any]) -> None:
        """Raise ``EmitError`` if ``params`` holds a name this event does not declare."""
        if not self.output_params:
            return
        unknown = [key for key in params if key not in self.output_params]
        if unknown:
            raise EmitError(
                f"event {self.name!r} of routine {routine_name!r} does not declare "
                f"parameter(s) {', '.join(sorted(unknown))}; declared: "
                f"{', '.join(self.output_params)}"
            )
