"""The public surface is exactly what we mean to export."""

from __future__ import annotations

import routilux
import routilux.activation_policies as policies
from routilux.job_state import JobState
from routilux.monitoring.flow_registry import FlowRegistry
from routilux.runtime import Runtime


def test_top_level_all_is_exact_and_sorted() -> None:
    assert routilux.__all__ == sorted(routilux.__all__)
    assert set(routilux.__all__) == {
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
    }
    for name in routilux.__all__:
        assert hasattr(routilux, name), name


def test_seed_import_paths_resolve_to_the_same_objects() -> None:
    assert routilux.Runtime is Runtime
    assert routilux.JobState is JobState
    assert routilux.FlowRegistry is FlowRegistry
    for name in (
        "immediate_policy",
        "all_slots_ready_policy",
        "batch_size_policy",
        "time_interval_policy",
        "custom_policy",
    ):
        assert getattr(policies, name) is getattr(routilux, name)


def test_execution_status_prints_as_its_value() -> None:
    status = routilux.ExecutionStatus.COMPLETED
    assert f"Status: {status}" == "Status: completed"
    assert status == "completed"
