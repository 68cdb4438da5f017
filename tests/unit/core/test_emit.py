"""Emit: routing inside an activation, clear errors everywhere else."""

from __future__ import annotations

import re

import pytest
from sample_routines import Double, Recorder, Source

from routilux import EmitError, ErrorHandler, ErrorStrategy, Flow, Routine, Runtime


class Misbehaving(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out", ["n"])
        self.define_event("anything")
        self.set_error_handler(ErrorHandler(ErrorStrategy.CONTINUE))
        self.set_logic(self.run)

    def run(self, trigger, policy_message, job_state):  # type: ignore[no-untyped-def]
        mode = trigger[0]["mode"]
        if mode == "unknown_event":
            self.emit("missing", n=1)
        elif mode == "bad_param":
            self.emit("out", n=1, extra=2)
        elif mode == "free_params":
            self.emit("anything", a=1, b=[2])
        elif mode == "foreign":
            Double().emit("out", n=1)


def test_emit_outside_an_activation_raises() -> None:
    with pytest.raises(EmitError, match="outside a running activation"):
        Source().emit("out", n=1)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("unknown_event", r"routine 'm' has no event 'missing'; events: anything, out"),
        ("bad_param", r"does not declare parameter\(s\) extra; declared: n"),
        ("foreign", r"a routine may only emit its own events"),
    ],
)
def test_bad_emits_are_recorded_with_a_clear_message(registry, runtime, mode, message) -> None:  # type: ignore[no-untyped-def]
    flow = Flow("emits")
    flow.add_routine(Misbehaving(), "m")
    registry.register_by_name("emits", flow)
    job = runtime.exec("emits", {"mode": mode})
    assert job.wait_for_completion(5)
    assert job.errors and job.errors[0].type == "EmitError"
    assert re.search(message, job.errors[0].message), job.errors[0].message


def test_event_without_declared_params_accepts_any(registry: object, runtime: Runtime) -> None:
    flow = Flow("free")
    flow.add_routine(Misbehaving(), "m")
    flow.add_routine(Recorder(), "c")
    flow.connect("m", "anything", "c", "input")
    registry.register_by_name("free", flow)  # type: ignore[attr-defined]
    job = runtime.exec("free", {"mode": "free_params"})
    assert job.wait_for_completion(5)
    assert job.status == "completed"
    assert job.shared_data["received"] == [{"a": 1, "b": [2]}]
