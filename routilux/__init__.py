"""Routilux: an event-driven workflow engine.

Routines with slots (inputs) and events (outputs) are wired into a Flow; a Runtime
runs jobs of registered flows on a thread pool; each job's JobState can be saved and
resumed. See README.md for a walk-through.
"""

from routilux.activation_policies import (
    all_slots_ready_policy,
    batch_size_policy,
    custom_policy,
    immediate_policy,
    time_interval_policy,
)
from routilux.error_handler import ErrorHandler, ErrorStrategy
from routilux.errors import (
    ActivationPolicyError,
    EmitError,
    FlowNotFoundError,
    InvalidFlowError,
    ResumeError,
    RoutiluxError,
    RuntimeStoppedError,
    SerializationError,
    SlotQueueFullError,
)
from routilux.event import Event
from routilux.flow import Flow
from routilux.job_state import JobState
from routilux.monitoring.flow_registry import FlowRegistry
from routilux.records import ErrorInfo
from routilux.routine import Routine
from routilux.runtime import Runtime
from routilux.slot import Slot
from routilux.status import ExecutionStatus

__version__ = "2.0.0"

__all__ = [
    "ActivationPolicyError",
    "EmitError",
    "ErrorHandler",
    "ErrorInfo",
    "ErrorStrategy",
    "Event",
    "ExecutionStatus",
    "Flow",
    "FlowNotFoundError",
    "FlowRegistry",
    "InvalidFlowError",
    "JobState",
    "ResumeError",
    "RoutiluxError",
    "Routine",
    "Runtime",
    "RuntimeStoppedError",
    "SerializationError",
    "Slot",
    "SlotQueueFullError",
    "all_slots_ready_policy",
    "batch_size_policy",
    "custom_policy",
    "immediate_policy",
    "time_interval_policy",
]
