"""FlowRegistry: the process-wide table of flows by name and by flow_id.

Example::

    registry = FlowRegistry.get_instance()
    registry.register_by_name("data_pipeline", flow)
    registry.get_by_name("data_pipeline") is flow

This is the one piece of process-wide mutable state the library has: the daemon
imports flow modules that register themselves here. Tests that need isolation build
their own ``FlowRegistry()`` and pass it to ``Runtime(registry=...)``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from routilux.flow import Flow


class FlowRegistry:
    """Thread-safe map of names and flow ids to Flows."""

    _instance: ClassVar[FlowRegistry | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Flow] = {}
        self._by_id: dict[str, Flow] = {}

    @classmethod
    def get_instance(cls) -> FlowRegistry:
        """The process-wide registry (created on first use)."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def register_by_name(self, name: str, flow: Flow) -> None:
        """Register ``flow`` under ``name`` (replacing any flow of that name)."""
        if not name:
            raise ValueError("flow name must be a non-empty string")
        with self._lock:
            self._by_name[name] = flow
            self._by_id[flow.flow_id] = flow

    def register(self, flow: Flow) -> None:
        """Register ``flow`` under its ``flow_id``."""
        self.register_by_name(flow.flow_id, flow)

    def get_by_name(self, name: str) -> Flow | None:
        with self._lock:
            return self._by_name.get(name)

    def get(self, flow_id: str) -> Flow | None:
        with self._lock:
            return self._by_id.get(flow_id)

    def list_names(self) -> list[str]:
        with self._lock:
            return sorted(self._by_name)

    def unregister(self, name: str) -> bool:
        """Remove the flow registered as ``name``; False if there was none."""
        with self._lock:
            flow = self._by_name.pop(name, None)
            if flow is None:
                return False
            if flow not in self._by_name.values():
                self._by_id.pop(flow.flow_id, None)
            return True

    def clear(self) -> None:
        with self._lock:
            self._by_name.clear()
            self._by_id.clear()
