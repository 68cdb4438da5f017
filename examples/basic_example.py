"""Basic routilux example: a three-step pipeline run as one job.

    source --output--> processor --output--> sink

``source`` receives the job's ``entry_params`` on its ``trigger`` slot, ``processor``
upper-cases the text and ``sink`` stores the result in the job's ``shared_data``.
Routines keep no per-job state on ``self``: everything a job produces lives in its
JobState, so one Flow can serve many jobs.

Run: ``python examples/basic_example.py`` (exits 0 and prints ``basic example OK``).
"""

from __future__ import annotations

from typing import Any

from routilux import Flow, FlowRegistry, Routine, Runtime
from routilux.activation_policies import immediate_policy
from routilux.job_state import JobState
from routilux.status import ExecutionStatus


class DataSource(Routine):
    """Entry routine: turns the job's entry data into one ``output`` event."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("output", ["data"])
        self.set_logic(self.produce)
        self.set_activation_policy(immediate_policy())

    def produce(
        self, trigger: list[dict[str, Any]], policy_message: Any, job_state: JobState
    ) -> None:
        for point in trigger:
            self.emit("output", data=point.get("data", "default"))


class DataProcessor(Routine):
    """Upper-cases each text it receives and counts them in its routine state."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("output", ["result"])
        self.set_logic(self.process)

    def process(
        self, items: list[dict[str, Any]], policy_message: Any, job_state: JobState
    ) -> None:
        routine_id = job_state.current_routine_id or "processor"
        for item in items:
            self.emit("output", result=f"Processed: {item['data'].upper()}")
        # Per-job state goes to the JobState, never onto self.
        seen = job_state.get_routine_state(routine_id, {}).get("count", 0)
        job_state.update_routine_state(routine_id, {"count": seen + len(items)})


class ResultSink(Routine):
    """Stores every result in ``shared_data['results']`` and logs it."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.store)

    def store(self, items: list[dict[str, Any]], policy_message: Any, job_state: JobState) -> None:
        results = list(job_state.shared_data.get("results", []))
        results.extend(item["result"] for item in items)
        job_state.shared_data["results"] = results
        job_state.shared_log.extend(f"stored {item['result']!r}" for item in items)


def build_flow() -> Flow:
    """The source -> processor -> sink pipeline."""
    flow = Flow(flow_id="data_pipeline")
    flow.add_routine(DataSource(), "source")
    flow.add_routine(DataProcessor(), "processor")
    flow.add_routine(ResultSink(), "sink")
    flow.connect("source", "output", "processor", "input")
    flow.connect("processor", "output", "sink", "input")
    return flow


def main() -> None:
    # A private registry keeps the example self-contained; the README uses the
    # process-wide FlowRegistry.get_instance(), which works the same way.
    registry = FlowRegistry()
    registry.register_by_name("data_pipeline", build_flow())
    with Runtime(thread_pool_size=4, registry=registry) as runtime:
        job = runtime.exec("data_pipeline", entry_params={"data": "Hello"})
        other = runtime.exec("data_pipeline", entry_params={"data": "routilux"})
        assert runtime.wait_until_all_jobs_finished(timeout=10.0), "jobs did not finish"

    for state in (job, other):
        print(
            f"job {state.job_id[:8]}: status={state.status} results={state.shared_data['results']}"
        )
        print(f"  processor state: {state.get_routine_state('processor')}")
        print(f"  log: {list(state.shared_log)}")
        assert state.status is ExecutionStatus.COMPLETED
        assert state.get_routine_state("processor") == {"count": 1}
    assert job.shared_data["results"] == ["Processed: HELLO"]
    assert other.shared_data["results"] == ["Processed: ROUTILUX"]
    # Each job saw only its own data although both ran on the same Flow objects.
    print("basic example OK")


if __name__ == "__main__":
    main()
