"""Random sequences of start / cancel / wait on one Runtime keep every job coherent.

Hypothesis drives a Runtime with jobs of three flows (a deterministic pipeline, a slow
chain that is easy to cancel mid-way, a flow that fails) and checks after every step:

* a job's status only moves along legal edges (pending -> running -> terminal);
* ``cancel_job`` returns True exactly for a job it cancelled, which is then
  ``cancelled`` at once and starts no new activation; False means the job had
  already finished;
* ``list_jobs(status)`` agrees with each job's own status.

At the end, each job's checkpoints count up by one, end with exactly one terminal
snapshot that matches the job's status, and a completed job has no work left and the
result its input predicts.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from prop_flows import JOB_TIMEOUT, POOL_SIZE, MemoryCheckpointer
from prop_routines import (
    build_pipeline_flow,
    build_slow_chain_flow,
    build_writer_flow,
    pipeline_totals,
)

from routilux import ErrorStrategy, FlowRegistry, JobState, Runtime
from routilux.status import LEGAL_TRANSITIONS, ExecutionStatus

#: Batch size of the pipeline flow in this machine.
BATCH = 2


class RuntimeMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        registry = FlowRegistry()
        registry.register_by_name("pipeline", build_pipeline_flow(BATCH))
        registry.register_by_name("slow", build_slow_chain_flow())
        registry.register_by_name("fails", build_writer_flow(ErrorStrategy.STOP, failures=1))
        self.checkpointer = MemoryCheckpointer()
        self.runtime = Runtime(POOL_SIZE, self.checkpointer, registry=registry)
        self.seen: dict[str, ExecutionStatus] = {}
        self.inputs: dict[str, tuple[str, dict[str, Any]]] = {}
        self.states: list[JobState] = []
        self.log_at_cancel: dict[str, int] = {}

    @rule(target=jobs, flow=st.sampled_from(["pipeline", "slow", "fails"]), n=st.integers(0, 6))
    def start(self, flow: str, n: int) -> JobState:
        params = {"n": n}
        job = self.runtime.exec(flow, entry_params=params)
        self.inputs[job.job_id] = (flow, params)
        self.states.append(job)
        return job

    @rule(job=jobs)
    def cancel(self, job: JobState) -> None:
        cancelled = self.runtime.cancel_job(job.job_id)
        event(f"cancel took effect: {cancelled}")
        if cancelled:
            assert job.status is ExecutionStatus.CANCELLED
            self.log_at_cancel[job.job_id] = len(job.shared_log)
        else:
            assert job.status.is_terminal, job.status

    @rule(job=jobs)
    def wait(self, job: JobState) -> None:
        assert job.wait_for_completion(timeout=JOB_TIMEOUT)
        assert job.status.is_terminal

    @invariant()
    def statuses_move_along_legal_edges(self) -> None:
        for job in self.states:
            old, new = self.seen.get(job.job_id, ExecutionStatus.PENDING), job.status
            assert new is old or new in LEGAL_TRANSITIONS[old], f"{old} -> {new}"
            self.seen[job.job_id] = new

    @invariant()
    def list_jobs_agrees_with_each_job(self) -> None:
        for status in ExecutionStatus:
            listed = {job.job_id for job in self.runtime.list_jobs(status)}
            for job in self.states:
                if job.status.is_terminal and job.status is status:
                    assert job.job_id in listed  # terminal statuses never change again

    def teardown(self) -> None:
        try:
            assert self.runtime.wait_until_all_jobs_finished(timeout=JOB_TIMEOUT)
        finally:
            self.runtime.shutdown(wait=True)
        for job in self.states:
            self.check_checkpoints(job)

    def check_checkpoints(self, job: JobState) -> None:
        snapshots = self.checkpointer.for_job(job.job_id)
        seqs = [s["checkpoint_seq"] for s in snapshots]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        terminal = [s for s in snapshots if s["status"] != "running"]
        assert len(terminal) == 1 and terminal[0] is snapshots[-1]
        assert terminal[0]["status"] == job.status.value
        flow, params = self.inputs[job.job_id]
        if flow == "slow" and job.job_id in self.log_at_cancel:
            # The one step running at cancel time may finish; no later step starts.
            assert len(job.shared_log) <= self.log_at_cancel[job.job_id] + 1
        if flow == "fails":
            assert job.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
        elif job.status is ExecutionStatus.COMPLETED:
            assert (
                not terminal[0]["pending"]["activations"] and not terminal[0]["pending"]["timers"]
            )
            self.check_result(flow, params, terminal[0])

    @staticmethod
    def check_result(flow: str, params: dict[str, Any], snapshot: dict[str, Any]) -> None:
        if flow == "pipeline":
            totals = pipeline_totals(params["n"], BATCH)
            assert sorted(e[1] for e in snapshot["shared_log"] if e[0] == "sink") == sorted(totals)
        else:
            assert snapshot["shared_log"] == ["p0", "p1", "p2"]


RuntimeMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=12, deadline=None)
test_runtime_state_machine = RuntimeMachine.TestCase
