"""Example flows for ``routilux-daemon`` (used by ``config/daemon.toml``).

* ``orders``: ``validate -> enrich -> store``. Each AMQP message body on
  ``routilux.orders`` (e.g. ``{"order_id": "A1", "items": [{"sku": "x", "qty": 2,
  "price": 3.5}]}``) becomes one job; the stored order lands in ``shared_data``.
* ``heartbeat``: ``beat -> record``, started by an interval and a cron trigger.

The daemon imports this module and calls :func:`register_flows`. Routines take no
constructor arguments (so ``Flow.to_dict`` can name them by import path), and logic
is idempotent because the daemon runs an interrupted activation again after a crash.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from routilux import Flow, Routine
from routilux.job_state import JobState

__all__ = [
    "EnrichOrder",
    "Heartbeat",
    "RecordBeat",
    "StoreOrder",
    "ValidateOrder",
    "build_heartbeat_flow",
    "build_orders_flow",
    "register_flows",
]

DataPoints = list[dict[str, Any]]


class ValidateOrder(Routine):
    """Entry of ``orders``: rejects an order without ``order_id`` or ``items``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("valid", ["order"])
        self.set_logic(self.validate)

    def validate(self, trigger: DataPoints, policy_message: Any, job_state: JobState) -> None:
        for order in trigger:
            if "order_id" not in order or not isinstance(order.get("items"), list):
                raise ValueError(f"an order needs 'order_id' and a list of 'items': {order!r}")
            self.emit("valid", order=dict(order))


class EnrichOrder(Routine):
    """Adds ``total`` (sum of qty * price) to each order."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("enriched", ["order"])
        self.set_logic(self.enrich)

    def enrich(self, input: DataPoints, policy_message: Any, job_state: JobState) -> None:
        for point in input:
            order = dict(point["order"])
            order["total"] = sum(
                float(item.get("qty", 1)) * float(item.get("price", 0)) for item in order["items"]
            )
            self.emit("enriched", order=order)


class StoreOrder(Routine):
    """Records each order in the job (a real flow would write to a database here)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.store)

    def store(self, input: DataPoints, policy_message: Any, job_state: JobState) -> None:
        for point in input:
            order = point["order"]
            # Keyed by order_id, so running this activation twice stores it once.
            job_state.shared_data[f"order:{order['order_id']}"] = order
            job_state.update_routine_state("store", {"last_order": order["order_id"]})


class Heartbeat(Routine):
    """Entry of ``heartbeat``: emits the time it ran, plus the trigger's params."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("beat", ["at", "params"])
        self.set_logic(self.beat)

    def beat(self, trigger: DataPoints, policy_message: Any, job_state: JobState) -> None:
        now = datetime.now(timezone.utc).isoformat()
        for params in trigger:
            self.emit("beat", at=now, params=dict(params))


class RecordBeat(Routine):
    """Keeps the last beat in the job's shared data."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.record)

    def record(self, input: DataPoints, policy_message: Any, job_state: JobState) -> None:
        for point in input:
            job_state.shared_data["last_beat"] = point["at"]


def build_orders_flow() -> Flow:
    """``validate -> enrich -> store``; the entry is ``validate.trigger``."""
    flow = Flow("orders")
    flow.add_routine(ValidateOrder(), "validate")
    flow.add_routine(EnrichOrder(), "enrich")
    flow.add_routine(StoreOrder(), "store")
    flow.connect("validate", "valid", "enrich", "input")
    flow.connect("enrich", "enriched", "store", "input")
    return flow


def build_heartbeat_flow() -> Flow:
    """``beat -> record``; the entry is ``beat.trigger``."""
    flow = Flow("heartbeat")
    flow.add_routine(Heartbeat(), "beat")
    flow.add_routine(RecordBeat(), "record")
    flow.connect("beat", "beat", "record", "input")
    return flow


def register_flows(registry: Any) -> None:
    """Called by the daemon with ``FlowRegistry.get_instance()``."""
    registry.register_by_name("orders", build_orders_flow())
    registry.register_by_name("heartbeat", build_heartbeat_flow())
