"""Save and resume: in-flight work runs again, finished work does not, nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from memory_checkpointer import MemoryCheckpointer
from sample_routines import Collect, Gate, Source, chain_flow, gated_flow

from routilux import Flow, FlowRegistry, JobState, ResumeError, Runtime

SUPPORT = Path(__file__).resolve().parents[2] / "support"


def test_job_state_round_trips_through_dict_and_file(
    tmp_path: Path, registry: FlowRegistry
) -> None:
    registry.register_by_name("chain", chain_flow())
    with Runtime(thread_pool_size=2, registry=registry) as rt:
        job = rt.exec("chain", {"n": 4})
        assert job.wait_for_completion(5)
    path = tmp_path / "state.json"
    job.save(path)
    loaded = JobState.load(path)
    assert loaded.to_dict() == job.to_dict()
    assert loaded.status == "completed" and loaded.wait_for_completion(0)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


def test_save_mid_job_then_resume_in_a_new_process(tmp_path: Path, registry: FlowRegistry) -> None:
    Gate.GATE.clear()
    registry.register_by_name("gated", gated_flow())
    path = tmp_path / "state.json"
    rt = Runtime(thread_pool_size=2, registry=registry)
    job = rt.exec("gated", {"n": 9})
    # source finished, gate is in flight (blocked): save while it runs
    assert _wait_for(lambda: job.execution_history, 5)
    job.save(path)
    rt.shutdown(wait=False)
    Gate.GATE.set()
    saved = json.loads(path.read_text())
    assert [a["routine_id"] for a in saved["pending"]["activations"]] == ["gate"]

    child = textwrap.dedent(
        f"""
        from routilux import FlowRegistry, JobState, Runtime
        from sample_routines import Gate, gated_flow
        Gate.GATE.set()
        reg = FlowRegistry()
        reg.register_by_name("gated", gated_flow())
        state = JobState.load({str(path)!r})
        with Runtime(thread_pool_size=2, registry=reg) as rt:
            rt.exec("gated", job_state=state)
            assert state.wait_for_completion(10)
        state.save({str(path)!r})
        """
    )
    env = {"PYTHONPATH": str(SUPPORT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", child],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    final = JobState.load(path)
    assert final.status == "completed"
    assert final.shared_data["collected"] == [9]
    runs = [r["routine_id"] for r in final.execution_history]
    assert runs == ["source", "gate", "collect"]  # source did not run again
    assert final.job_id == job.job_id


def test_resume_from_every_checkpoint_reaches_the_same_end(
    registry: FlowRegistry, checkpointer: MemoryCheckpointer
) -> None:
    registry.register_by_name("chain", chain_flow())
    with Runtime(thread_pool_size=2, registry=registry, checkpointer=checkpointer) as rt:
        job = rt.exec("chain", {"n": 5})
        assert job.wait_for_completion(5)
        assert rt.wait_until_all_jobs_finished(5)
    snaps = checkpointer.for_job(job.job_id)
    expected = snaps[-1]
    for snap in snaps[:-1]:
        state = JobState.from_dict(json.loads(json.dumps(snap)))
        with Runtime(thread_pool_size=2, registry=registry) as rt:
            rt.exec("chain", job_state=state)
            assert state.wait_for_completion(5)
        end = state.to_dict()
        for key in ("status", "shared_data", "shared_log", "routine_states"):
            assert end[key] == expected[key], (snap["checkpoint_seq"], key)


def test_resume_into_a_changed_flow_raises_resume_error(
    registry: FlowRegistry, checkpointer: MemoryCheckpointer
) -> None:
    registry.register_by_name("chain", chain_flow())
    Gate.GATE.clear()
    registry.register_by_name("gated", gated_flow())
    rt = Runtime(thread_pool_size=2, registry=registry, checkpointer=checkpointer)
    job = rt.exec("gated", {"n": 1})
    assert _wait_for(lambda: len(checkpointer.for_job(job.job_id)) >= 2, 5)
    snap = checkpointer.for_job(job.job_id)[1]
    Gate.GATE.set()
    rt.shutdown(wait=True, timeout=5)
    changed = Flow("gated")
    changed.add_routine(Source(), "source")
    changed.add_routine(Collect(), "collect")
    changed.connect("source", "out", "collect", "input")
    registry.register_by_name("gated", changed)
    with Runtime(thread_pool_size=2, registry=registry) as rt2:
        with pytest.raises(ResumeError, match=r"routine 'gate', which flow 'gated' no longer has"):
            rt2.exec("gated", job_state=JobState.from_dict(snap))
        assert rt2.list_jobs() == []


def test_exec_on_a_finished_job_state_raises(registry: FlowRegistry, runtime: Runtime) -> None:
    registry.register_by_name("chain", chain_flow())
    job = runtime.exec("chain", {"n": 1})
    assert job.wait_for_completion(5)
    with pytest.raises(ValueError, match="already completed"):
        runtime.exec("chain", job_state=JobState.from_dict(job.to_dict()))


def test_a_fresh_job_state_object_is_started_with_entry_params(
    registry: FlowRegistry, runtime: Runtime
) -> None:
    registry.register_by_name("chain", chain_flow())
    mine = JobState(job_id="mine")
    assert runtime.exec("chain", {"n": 2}, job_state=mine) is mine
    assert mine.wait_for_completion(5)
    assert mine.shared_data["collected"] == [4]


def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False
