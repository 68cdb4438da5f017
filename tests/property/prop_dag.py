"""Random DAG flows and the oracle of what exactly-once delivery makes them log.

Every node logs ``[routine_id, slot, token]`` for each data point it receives and
emits ``fanout`` children ``token>routine_id.k``, so a token spells the path it took.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from prop_flows import INTERVAL

from routilux import ErrorHandler, ErrorStrategy, Flow, Routine
from routilux.activation_policies import time_interval_policy
from routilux.job_state import JobState


# -- random DAGs -----------------------------------------------------------------------
def _seen_failure(job_state: JobState, message: str) -> bool:
    return any(error.message == message for error in job_state.errors)


def relay(routine: Routine, args: tuple[Any, ...]) -> None:
    """Log ``[routine_id, slot, token]`` per data point, then emit ``fanout`` children.

    With ``fail_first`` set, an activation raises once before doing anything (the error
    record in the JobState is how its retry knows it has failed before).
    """
    *slot_lists, _message, job_state = args
    routine_id = job_state.current_routine_id
    if routine.get_config("fail_first"):
        tokens = sorted(item["token"] for items in slot_lists for item in items)
        message = f"first try {routine_id} {tokens}"
        if not _seen_failure(job_state, message):
            raise TimeoutError(message)
    for slot, items in zip(routine.slots, slot_lists, strict=True):
        for item in items:
            token = item["token"]
            job_state.shared_log.append([routine_id, slot, token])
            for k in range(routine.get_config("fanout", 1)):
                routine.emit("out", token=f"{token}>{routine_id}.{k}")


class DagEntry(Routine):
    """Entry node of a random DAG (slot ``trigger``)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger")
        self.define_event("out", ["token"])
        self.set_logic(lambda *args: relay(self, args))


class DagNode(Routine):
    """Inner node of a random DAG (slots ``a`` and ``b``)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("a")
        self.define_slot("b")
        self.define_event("out", ["token"])
        self.set_logic(lambda *args: relay(self, args))


@dataclass(frozen=True)
class DagSpec:
    """Shape of a random DAG: node i's fanout and edges ``(src, dst, slot)``, src < dst."""

    fanout: tuple[int, ...]
    edges: tuple[tuple[int, int, str], ...]

    @property
    def size(self) -> int:
        return len(self.fanout)


def expected_log(spec: DagSpec, root: str) -> Counter[tuple[Any, ...]]:
    """What exactly-once delivery on every connection makes each node log."""
    arrivals: list[list[str]] = [[root]] + [[] for _ in range(spec.size - 1)]
    log: Counter[tuple[Any, ...]] = Counter({("n0", "trigger", root): 1})
    for dst in range(1, spec.size):
        for src, target, slot in spec.edges:
            if target != dst:
                continue
            for token in arrivals[src]:
                for k in range(spec.fanout[src]):
                    child = f"{token}>n{src}.{k}"
                    arrivals[dst].append(child)
                    log[(f"n{dst}", slot, child)] += 1
    return log


#: Largest number of deliveries a generated DAG may cause (keeps examples fast).
MAX_DELIVERIES = 600


@st.composite
def dag_specs(draw: st.DrawFn, max_nodes: int = 6, max_fanout: int = 2) -> DagSpec:
    """Random DAGs; each node pair gets no edge, an edge to slot a, to b, or to both."""
    n = draw(st.integers(2, max_nodes))
    fanout = tuple(draw(st.integers(1, max_fanout)) for _ in range(n))
    edges: list[tuple[int, int, str]] = []
    for dst in range(1, n):
        for src in range(dst):
            slots = draw(st.sampled_from([(), ("a",), ("b",), ("a", "b")]))
            edges.extend((src, dst, slot) for slot in slots)
    spec = DagSpec(fanout, tuple(edges))
    assume(sum(expected_log(spec, "r").values()) <= MAX_DELIVERIES)
    return spec


def build_dag_flow(
    spec: DagSpec, retry_node: int | None = None, interval_node: int | None = None
) -> Flow:
    """The flow of ``spec``.

    ``retry_node`` fails each first attempt under RETRY; ``interval_node`` uses
    ``time_interval_policy(INTERVAL)`` (both add timers to the job's pending work).
    """
    flow = Flow(flow_id="dag")
    for i in range(spec.size):
        routine: Routine = DagEntry() if i == 0 else DagNode()
        routine.set_config(fanout=spec.fanout[i])
        if i == retry_node:
            routine.set_config(fail_first=True)
            routine.set_error_handler(
                ErrorHandler(ErrorStrategy.RETRY, max_retries=2, retry_delay=0.005)
            )
        if i == interval_node:
            routine.set_activation_policy(time_interval_policy(INTERVAL))
        flow.add_routine(routine, f"n{i}")
    for src, dst, slot in spec.edges:
        flow.connect(f"n{src}", "out", f"n{dst}", slot)
    return flow


def children(spec: DagSpec, routine_id: str, token: str) -> Counter[tuple[Any, ...]]:
    """The deliveries one logged data point of ``routine_id`` causes."""
    src = int(routine_id[1:])
    out: Counter[tuple[Any, ...]] = Counter()
    for edge_src, dst, slot in spec.edges:
        if edge_src == src:
            for k in range(spec.fanout[src]):
                out[(f"n{dst}", slot, f"{token}>{routine_id}.{k}")] += 1
    return out


def accounted(snapshot: dict[str, Any]) -> Counter[tuple[Any, ...]]:
    """Every delivery a snapshot knows of: processed (logged), waiting, or in flight."""
    found: Counter[tuple[Any, ...]] = Counter(tuple(e) for e in snapshot["shared_log"])
    pending = snapshot["pending"]
    for routine_id, slots in pending["slots"].items():
        for slot, items in slots.items():
            found.update((routine_id, slot, item["token"]) for item in items)
    activations = pending["activations"] + [
        t["activation"] for t in pending["timers"] if t.get("activation")
    ]
    for act in activations:
        for slot, items in act["data"].items():
            found.update((act["routine_id"], slot, item["token"]) for item in items)
    return found


def caused(spec: DagSpec, snapshot: dict[str, Any], root: str) -> Counter[tuple[Any, ...]]:
    """The entry delivery plus the children of every data point the snapshot logged."""
    total: Counter[tuple[Any, ...]] = Counter({("n0", "trigger", root): 1})
    for routine_id, _slot, token in snapshot["shared_log"]:
        total.update(children(spec, routine_id, token))
    return total
