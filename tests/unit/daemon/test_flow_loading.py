"""Flow loading: modules, register_flows, Flow.to_dict files, and trigger checks."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from daemon.errors import FlowLoadError
from daemon.flow_loading import load_flows, require_flows, trigger_problems
from daemon.settings import FlowsSettings, Settings
from routilux import Flow, FlowRegistry, Runtime

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def modules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for throwaway flow modules (and the repo, for examples)."""
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def global_registry() -> Iterator[FlowRegistry]:
    """The process-wide registry; flows a test adds are removed afterwards."""
    registry = FlowRegistry.get_instance()
    before = set(registry.list_names())
    yield registry
    for name in set(registry.list_names()) - before:
        registry.unregister(name)


def build_heartbeat_flow() -> Flow:
    from examples.daemon_flows import build_heartbeat_flow as build

    return build()


def write_module(directory: Path, body: str) -> str:
    name = f"flows_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def orders_dict(flow_id: str = "orders_from_file") -> dict[str, object]:
    return json.loads((REPO / "config/flows/orders_from_file.json").read_text()) | {
        "flow_id": flow_id
    }


def test_module_register_flows_hook_is_called_with_the_registry(modules_dir: Path) -> None:
    name = write_module(
        modules_dir,
        """
        from examples.daemon_flows import build_orders_flow

        def register_flows(registry):
            registry.register_by_name("shop", build_orders_flow())
        """,
    )
    registry = FlowRegistry()
    report = load_flows(FlowsSettings(modules=[name]), registry)
    assert report.problems == []
    assert report.sources == {f"module {name}": ["shop"]}
    assert registry.list_names() == ["shop"]


def test_module_that_registers_at_import_like_the_readme_is_seen(
    modules_dir: Path, global_registry: FlowRegistry
) -> None:
    flow_name = f"readme_style_{uuid.uuid4().hex[:6]}"
    name = write_module(
        modules_dir,
        f"""
        from examples.daemon_flows import build_heartbeat_flow
        from routilux.monitoring.flow_registry import FlowRegistry

        FlowRegistry.get_instance().register_by_name({flow_name!r}, build_heartbeat_flow())
        """,
    )
    report = load_flows(FlowsSettings(modules=[name]), global_registry)
    assert report.problems == []
    assert report.flow_names == [flow_name]


def test_every_module_failure_is_one_problem_naming_the_module(modules_dir: Path) -> None:
    broken = write_module(modules_dir, "def oops(:\n")
    raising = write_module(modules_dir, "def register_flows(registry):\n    raise KeyError('db')\n")
    report = load_flows(
        FlowsSettings(modules=["no_such_module_xyz", broken, raising]), FlowRegistry()
    )
    assert len(report.problems) == 3
    missing, syntax, hook = report.problems
    assert "module no_such_module_xyz" in missing and "ModuleNotFoundError" in missing
    assert f"module {broken}" in syntax and "SyntaxError" in syntax
    assert f"module {raising}" in hook and "KeyError" in hook
    assert all("\n" not in problem for problem in report.problems)


def test_flow_files_are_rebuilt_with_from_dict_and_registered_by_flow_id(
    modules_dir: Path, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "a.json").write_text(json.dumps(orders_dict("file_a")))
    (flows / "notes.txt").write_text("ignored: not a flow file suffix")
    single = tmp_path / "b.json"
    single.write_text(json.dumps(orders_dict("file_b")))
    registry = FlowRegistry()
    report = load_flows(FlowsSettings(paths=[flows, single]), registry)
    assert report.problems == []
    assert registry.list_names() == ["file_a", "file_b"]
    assert registry.get_by_name("file_a").resolve_entry() == ("validate", "trigger")


def test_bad_flow_files_are_reported_naming_the_file_and_cause(
    modules_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "syntax.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    unknown_class = orders_dict("bad_class")
    unknown_class["routines"]["validate"]["class"] = "examples.daemon_flows:Nope"  # type: ignore[index]
    (tmp_path / "class.json").write_text(json.dumps(unknown_class))
    (tmp_path / "dup.json").write_text(json.dumps(orders_dict("taken")))
    registry = FlowRegistry()
    registry.register_by_name("taken", build_heartbeat_flow())
    paths = [tmp_path / n for n in ("syntax.json", "list.json", "class.json", "dup.json", "gone")]
    problems = load_flows(FlowsSettings(paths=paths), registry).problems
    assert [p.split(":", 2)[1].strip() for p in problems] == [str(p) for p in paths]
    assert "JSONDecodeError" in problems[0]
    assert "expected a mapping" in problems[1]
    assert "Nope" in problems[2]
    assert "a different flow 'taken' is already registered" in problems[3]
    assert "no such file or directory" in problems[4]


def test_loading_the_same_flow_file_twice_is_harmless(modules_dir: Path) -> None:
    registry = FlowRegistry()
    section = FlowsSettings(paths=[REPO / "config/flows"])
    first, second = load_flows(section, registry), load_flows(section, registry)
    assert first.problems == second.problems == []
    assert registry.list_names() == ["orders_from_file"]


def test_yaml_flow_files_load_and_bad_yaml_is_named(modules_dir: Path, tmp_path: Path) -> None:
    good = tmp_path / "flow.yaml"
    good.write_text(yaml.safe_dump(orders_dict("yaml_flow")))
    bad = tmp_path / "broken.yml"
    bad.write_text("routines: [unclosed\n")
    registry = FlowRegistry()
    report = load_flows(FlowsSettings(paths=[good, bad]), registry)
    assert registry.list_names() == ["yaml_flow"]
    assert len(report.problems) == 1
    assert "broken.yml" in report.problems[0] and "not valid YAML" in report.problems[0]


def test_triggers_must_name_a_known_flow_and_an_existing_entry(modules_dir: Path) -> None:
    registry = FlowRegistry()
    load_flows(FlowsSettings(modules=["examples.daemon_flows"]), registry)
    settings = Settings(
        triggers=[
            {"type": "amqp", "flow": "orders", "queue": "q1", "entry": "validate.trigger"},
            {"type": "interval", "flow": "heartbeat", "seconds": 1},
            {"type": "amqp", "flow": "ordrs", "queue": "q2"},
            {"type": "amqp", "flow": "orders", "queue": "q3", "entry": "nobody.trigger"},
            {"type": "amqp", "flow": "orders", "queue": "q4", "entry": "enrich.nothing"},
        ]
    )
    problems = trigger_problems(settings.triggers, registry)
    assert len(problems) == 3
    assert problems[0].startswith("triggers[2] (amqp:q2): unknown flow 'ordrs'")
    assert "heartbeat, orders" in problems[0]
    assert problems[1].startswith("triggers[3] (amqp:q3)") and "nobody" in problems[1]
    assert problems[2].startswith("triggers[4] (amqp:q4)") and "nothing" in problems[2]


def test_a_flow_without_a_clear_entry_is_a_trigger_problem(modules_dir: Path) -> None:
    name = write_module(
        modules_dir,
        """
        from routilux import Flow
        from examples.daemon_flows import EnrichOrder

        def register_flows(registry):
            flow = Flow("no_entry")
            flow.add_routine(EnrichOrder(), "enrich")
            flow.add_routine(EnrichOrder(), "enrich2")
            registry.register(flow)
        """,
    )
    registry = FlowRegistry()
    load_flows(FlowsSettings(modules=[name]), registry)
    timer = Settings(triggers=[{"type": "interval", "flow": "no_entry", "seconds": 1}])
    (problem,) = trigger_problems(timer.triggers, registry)
    assert "no entry" in problem


def test_require_flows_raises_once_with_every_problem(modules_dir: Path) -> None:
    settings = Settings(
        flows={"modules": ["no_such_module_abc"]},
        triggers=[{"type": "amqp", "flow": "ghost", "queue": "q"}],
    )
    with pytest.raises(FlowLoadError) as info:
        require_flows(settings.flows, settings.triggers, FlowRegistry())
    assert len(info.value.problems) == 2
    assert str(info.value).startswith("2 problems: ")


def test_the_shipped_flow_file_runs_a_job_end_to_end(modules_dir: Path) -> None:
    registry = FlowRegistry()
    report = load_flows(FlowsSettings(paths=[REPO / "config/flows"]), registry)
    assert report.problems == [] and report.flow_names == ["orders_from_file"]
    order = {"order_id": "A7", "items": [{"sku": "s", "qty": 3, "price": 2}]}
    with Runtime(thread_pool_size=2, registry=registry) as runtime:
        job = runtime.exec("orders_from_file", order)
        assert job.wait_for_completion(timeout=10)
    assert job.status == "completed"
    assert job.shared_data["order:A7"]["total"] == 6.0
