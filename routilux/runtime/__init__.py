"""The Runtime that executes jobs (``from routilux.runtime import Runtime``)."""

from routilux.runtime.runtime import Runtime, RuntimeState

__all__ = ["Runtime", "RuntimeState"]
