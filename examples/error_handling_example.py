"""Error strategies: what a job does when a routine's logic raises.

Every flow here is ``source -> check -> sink``: ``source`` emits the entry's
``values`` one per data point; ``check`` passes them on but raises on negative values.
``sink`` stores what got through. The strategy is set on ``check``
(``routine.set_error_handler``; a flow-wide one via ``flow.set_error_handler``):

* STOP (the default): the job ends ``failed`` at the first error; nothing new starts.
* CONTINUE: the error is recorded, the job goes on and ends ``completed``.
* SKIP: the failing routine is skipped for the rest of the job; later data sent to it
  is discarded; the job ends ``completed``.
* RETRY: the same activation runs again after ``retry_delay * retry_backoff**n``
  (on a timer, no worker sleeps); a flaky step that fails twice then succeeds ends
  ``completed``; one that never succeeds ends ``failed`` once retries are exhausted.

Run: ``python examples/error_handling_example.py`` (exits 0, prints
``error handling example OK``).
"""

from __future__ import annotations

from typing import Any

from routilux import ErrorHandler, ErrorStrategy, Flow, FlowRegistry, Routine, Runtime
from routilux.activation_policies import batch_size_policy
from routilux.job_state import JobState
from routilux.status import ExecutionStatus


class Source(Routine):
    """Entry: emits each of ``entry_params['values']``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("item", ["value"])
        self.set_logic(self.emit_all)

    def emit_all(
        self, trigger: list[dict[str, Any]], policy_message: Any, job_state: JobState
    ) -> None:
        for point in trigger:
            for value in point["values"]:
                self.emit("item", value=value)


class Check(Routine):
    """Passes values on; raises ValueError on a negative one.

    With ``set_config(flaky=N)`` it instead raises TimeoutError until N errors of its
    own are recorded in the job, which makes a retry succeed deterministically.
    """

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.define_event("ok", ["value"])
        self.set_logic(self.check)
        # One value per activation, so an error affects exactly one item.
        self.set_activation_policy(batch_size_policy(1))

    def check(self, items: list[dict[str, Any]], policy_message: Any, job_state: JobState) -> None:
        routine_id = job_state.current_routine_id
        flaky = self.get_config("flaky")
        if flaky is not None:
            failures = sum(1 for e in job_state.errors if e.routine_id == routine_id)
            if failures < flaky:
                raise TimeoutError(f"service busy (failure {failures + 1})")
        for item in items:
            if item["value"] < 0:
                raise ValueError(f"negative value {item['value']}")
            self.emit("ok", value=item["value"])


class Sink(Routine):
    """Collects every value that got through in ``shared_data['stored']``."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input")
        self.set_logic(self.store)

    def store(self, items: list[dict[str, Any]], policy_message: Any, job_state: JobState) -> None:
        stored = list(job_state.shared_data.get("stored", []))
        job_state.shared_data["stored"] = stored + [item["value"] for item in items]


def build_flow(name: str, handler: ErrorHandler | None, flaky: int | None = None) -> Flow:
    """source -> check -> sink with ``handler`` on ``check``."""
    flow = Flow(flow_id=name)
    flow.add_routine(Source(), "source")
    check = Check()
    check.set_error_handler(handler)
    if flaky is not None:
        check.set_config(flaky=flaky)
    flow.add_routine(check, "check")
    flow.add_routine(Sink(), "sink")
    flow.connect("source", "item", "check", "input")
    flow.connect("check", "ok", "sink", "input")
    return flow


def run(runtime: Runtime, name: str, values: list[int]) -> JobState:
    job = runtime.exec(name, entry_params={"values": values})
    assert job.wait_for_completion(timeout=10.0), f"{name} did not finish"
    stored = sorted(job.shared_data.get("stored", []))
    errors = [str(e) for e in job.errors]
    print(f"{name:>14}: status={job.status} stored={stored} errors={errors}")
    return job


def main() -> None:
    registry = FlowRegistry()
    fast_retry = {"retry_delay": 0.05, "retry_backoff": 2.0}
    flows = {
        "stop": build_flow("stop", None),  # no handler anywhere: STOP
        "continue": build_flow("continue", ErrorHandler(ErrorStrategy.CONTINUE)),
        "skip": build_flow("skip", ErrorHandler(ErrorStrategy.SKIP)),
        "retry": build_flow(
            "retry", ErrorHandler(ErrorStrategy.RETRY, max_retries=3, **fast_retry), flaky=2
        ),
        "retry_exhausted": build_flow(
            "retry_exhausted",
            ErrorHandler(ErrorStrategy.RETRY, max_retries=2, **fast_retry),
            flaky=99,
        ),
    }
    for name, flow in flows.items():
        registry.register_by_name(name, flow)

    with Runtime(thread_pool_size=1, registry=registry) as runtime:
        # One worker thread keeps the order of activations easy to follow.
        job = run(runtime, "stop", [1, -2, 3])
        assert job.status is ExecutionStatus.FAILED
        assert job.error is not None and job.error.type == "ValueError"
        assert "Traceback" in job.error.traceback
        assert -2 not in job.shared_data.get("stored", [])

        job = run(runtime, "continue", [1, -2, 3])
        assert job.status is ExecutionStatus.COMPLETED
        assert sorted(job.shared_data["stored"]) == [1, 3]
        assert [e.type for e in job.errors] == ["ValueError"]

        job = run(runtime, "skip", [1, -2, 3, 4])
        assert job.status is ExecutionStatus.COMPLETED
        assert job.shared_data["stored"] == [1], "check ran again after it was skipped"
        outcomes = [r["outcome"] for r in job.execution_history if r["routine_id"] == "check"]
        print(f"{'':>14}  check outcomes: {outcomes}")
        # 3 and 4 were already queued for check when it was skipped: discarded, not run.
        assert outcomes[:2] == ["ok", "skipped"] and set(outcomes[2:]) <= {"discarded"}
        assert job.to_dict()["pending"]["skipped_routines"] == ["check"]

        job = run(runtime, "retry", [7])
        assert job.status is ExecutionStatus.COMPLETED
        assert job.shared_data["stored"] == [7]
        outcomes = [r["outcome"] for r in job.execution_history if r["routine_id"] == "check"]
        print(f"{'':>14}  check attempts: {outcomes}")
        assert outcomes == ["retry", "retry", "ok"]

        job = run(runtime, "retry_exhausted", [7])
        assert job.status is ExecutionStatus.FAILED
        assert [e.attempt for e in job.errors] == [0, 1, 2]
        assert "stored" not in job.shared_data
    print("error handling example OK")


if __name__ == "__main__":
    main()
