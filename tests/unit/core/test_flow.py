"""Flow building, entry resolution, errors naming the choices, and serialization."""

from __future__ import annotations

import pytest
from sample_routines import Collect, Double, Source, chain_flow

from routilux import (
    ErrorHandler,
    ErrorStrategy,
    Flow,
    InvalidFlowError,
    Routine,
    SerializationError,
)
from routilux.activation_policies import batch_size_policy, custom_policy, time_interval_policy


class NeedsName(Routine):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def always(slots, job_state):  # type: ignore[no-untyped-def]
    return True


def test_connect_to_unknown_routine_lists_the_routines() -> None:
    flow = chain_flow()
    with pytest.raises(InvalidFlowError, match=r"no routine 'nope'; routines: collect, double"):
        flow.connect("source", "out", "nope", "input")


def test_connect_to_unknown_event_or_slot_lists_the_valid_ones() -> None:
    flow = chain_flow()
    with pytest.raises(InvalidFlowError, match=r"no event 'output'; events: out"):
        flow.connect("source", "output", "double", "input")
    with pytest.raises(InvalidFlowError, match=r"no slot 'in'; slots: input"):
        flow.connect("source", "out", "double", "in")


def test_duplicate_routine_id_and_duplicate_edge_are_rejected() -> None:
    flow = chain_flow()
    with pytest.raises(InvalidFlowError, match="already has a routine 'double'"):
        flow.add_routine(Double(), "double")
    with pytest.raises(InvalidFlowError, match="connected already"):
        flow.connect("source", "out", "double", "input")


def test_entry_is_the_single_trigger_routine_or_entry_routine_id() -> None:
    flow = chain_flow()
    assert flow.resolve_entry() == ("source", "trigger")
    flow.entry_routine_id = "double"
    assert flow.resolve_entry() == ("double", "input")
    assert flow.resolve_entry("collect.input") == ("collect", "input")


def test_no_or_ambiguous_entry_raises_value_error() -> None:
    empty = Flow("empty")
    empty.add_routine(Double(), "double")
    with pytest.raises(ValueError, match="no entry"):
        empty.resolve_entry()
    two = chain_flow()
    two.add_routine(Source(), "source2")
    with pytest.raises(ValueError, match=r"several routines .*source, source2"):
        two.resolve_entry()


def test_to_dict_from_dict_round_trip_keeps_policies_handlers_and_config() -> None:
    flow = chain_flow("roundtrip")
    collect = flow.get_routine("collect")
    collect.set_activation_policy(batch_size_policy(3))
    collect.set_config(label="sink", limit=5)
    flow.get_routine("double").set_activation_policy(time_interval_policy(0.5))
    flow.get_routine("double").set_error_handler(
        ErrorHandler(ErrorStrategy.RETRY, max_retries=2, retryable_exceptions=[TimeoutError])
    )
    flow.set_error_handler(ErrorHandler(ErrorStrategy.CONTINUE))
    flow.entry_routine_id = "source"
    data = flow.to_dict()
    rebuilt = Flow.from_dict(data)
    assert rebuilt.to_dict() == data
    assert rebuilt.fingerprint() == flow.fingerprint()
    assert rebuilt.get_routine("collect").get_config("label") == "sink"
    handler = rebuilt.get_routine("double").get_error_handler()
    assert handler is not None and handler.retryable_exceptions == (TimeoutError,)


def test_from_dict_with_a_constructor_parameter_names_the_class() -> None:
    data = chain_flow().to_dict()
    data["routines"]["double"]["class"] = f"{__name__}:NeedsName"
    with pytest.raises(SerializationError, match=r"NeedsName cannot be built without arguments"):
        Flow.from_dict(data)


def test_a_lambda_policy_cannot_be_serialized_but_a_module_function_can() -> None:
    flow = chain_flow()
    flow.get_routine("collect").set_activation_policy(custom_policy(lambda s, j: True))
    with pytest.raises(SerializationError, match=r"routine 'collect'.*not importable by name"):
        flow.to_dict()
    flow.get_routine("collect").set_activation_policy(custom_policy(always))
    assert Flow.from_dict(flow.to_dict()).to_dict() == flow.to_dict()


def test_fingerprint_changes_with_the_graph_not_with_config() -> None:
    flow = chain_flow()
    before = flow.fingerprint()
    flow.get_routine("collect").set_config(x=1)
    assert flow.fingerprint() == before
    flow.add_routine(Collect(), "extra")
    flow.connect("double", "out", "extra", "input")
    assert flow.fingerprint() != before


def test_mermaid_and_dot_show_every_routine_edge_policy_and_the_entry() -> None:
    flow = chain_flow("pic")
    flow.get_routine("collect").set_activation_policy(batch_size_policy(5))
    mermaid = flow.to_mermaid()
    assert mermaid.splitlines()[0] == "flowchart LR"
    assert 'r_source["source ▶ entry<br/>Source · immediate"]' in mermaid
    assert 'r_collect["collect<br/>Collect · batch_size(5)"]' in mermaid
    assert 'r_source -->|"out → input"| r_double' in mermaid
    dot = flow.to_dot()
    assert dot.startswith('digraph "pic" {') and dot.endswith("}")
    assert 'r_double -> r_collect [label="out → input"];' in dot
