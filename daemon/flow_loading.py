"""Load the flows named by ``[flows]`` into a FlowRegistry and check the triggers.

Two sources (DESIGN.md §4 "Flows"):

* each module in ``flows.modules`` is imported; it registers flows itself (as the
  README does) and/or defines ``register_flows(registry)``, which is then called;
* each file in ``flows.paths`` (a directory means its ``*.json``/``*.yaml``/``*.yml``
  files) holds one ``Flow.to_dict()``; it is rebuilt with ``Flow.from_dict`` and
  registered under its ``flow_id``.

Every failure becomes a one-line problem naming the module or file and the cause;
all problems are collected so ``check`` can list them together.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from daemon.errors import FlowLoadError
from daemon.settings import AmqpTrigger, FlowsSettings, Trigger
from routilux import Flow
from routilux.errors import RoutiluxError

__all__ = [
    "FLOW_FILE_SUFFIXES",
    "FlowLoadReport",
    "load_flows",
    "require_flows",
    "trigger_problems",
]

logger = logging.getLogger(__name__)

#: File suffixes read from a directory listed in ``flows.paths``.
FLOW_FILE_SUFFIXES = (".json", ".yaml", ".yml")


class Registry(Protocol):
    """The part of ``routilux.monitoring.flow_registry.FlowRegistry`` used here."""

    def register(self, flow: Any) -> None: ...

    def get_by_name(self, name: str) -> Flow | None: ...

    def list_names(self) -> list[str]: ...


@dataclass
class FlowLoadReport:
    """What :func:`load_flows` did: flow names per source, and every problem."""

    sources: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def flow_names(self) -> list[str]:
        """Every flow name the sources registered, in load order."""
        return [name for names in self.sources.values() for name in names]


def load_flows(section: FlowsSettings, registry: Registry) -> FlowLoadReport:
    """Import ``section.modules`` and load ``section.paths`` into ``registry``.

    Never raises for a bad module or file: each becomes a problem in the report.
    Modules are imported once per process (Python caches them), so loading twice
    into a cleared registry only re-registers what ``register_flows`` adds.
    """
    report = FlowLoadReport()
    for module_name in section.modules:
        _load_module(module_name, registry, report)
    for path in section.paths:
        for file in _flow_files(path, report):
            _load_file(file, registry, report)
    return report


def require_flows(section: FlowsSettings, triggers: Sequence[Trigger], registry: Registry) -> None:
    """Load flows and check triggers; the strict form used by ``run``.

    Raises:
        FlowLoadError: with every load problem and every bad trigger listed.
    """
    report = load_flows(section, registry)
    problems = report.problems + trigger_problems(triggers, registry)
    if problems:
        raise FlowLoadError(problems)
    logger.info("loaded flows: %s", ", ".join(sorted(registry.list_names())) or "(none)")


def _load_module(module_name: str, registry: Registry, report: FlowLoadReport) -> None:
    source = f"module {module_name}"
    before = set(registry.list_names())
    try:
        module = importlib.import_module(module_name)
        hook = getattr(module, "register_flows", None)
        if callable(hook):
            hook(registry)
    except Exception as exc:  # user code: any failure is a problem to report
        report.problems.append(f"flows.modules: {source}: {_cause(exc)}")
        return
    added = sorted(set(registry.list_names()) - before)
    report.sources[source] = added
    if not added:
        logger.info("%s registered no new flows", source)


def _flow_files(path: Path, report: FlowLoadReport) -> list[Path]:
    """``path`` itself, or the flow files of a directory in name order."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in FLOW_FILE_SUFFIXES)
    if path.is_file():
        return [path]
    report.problems.append(f"flows.paths: {path}: no such file or directory")
    return []


def _load_file(path: Path, registry: Registry, report: FlowLoadReport) -> None:
    try:
        data = _read_flow_file(path)
        flow = Flow.from_dict(data)
    except Exception as exc:  # bad JSON/YAML, unknown routine class, ...: report, go on
        report.problems.append(f"flows.paths: {path}: {_cause(exc)}")
        return
    name = str(flow.flow_id)
    existing = registry.get_by_name(name)
    # Loading the same file twice is harmless; a different flow under the name is not.
    if existing is not None and existing.fingerprint() != flow.fingerprint():
        report.problems.append(
            f"flows.paths: {path}: a different flow {name!r} is already registered"
        )
        return
    registry.register(flow)
    report.sources[f"file {path}"] = [name]


def _read_flow_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else _parse_yaml(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping (Flow.to_dict() form), got {type(data).__name__}")
    return data


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None


def trigger_problems(triggers: Sequence[Trigger], registry: Registry) -> list[str]:
    """One line per trigger naming an unknown flow, or an entry the flow cannot take.

    The entry rule is ``Flow.resolve_entry``: ``entry = "routine.slot"`` must exist;
    without it the flow's ``entry_routine_id``, else its single ``trigger`` routine.
    """
    problems: list[str] = []
    for index, trigger in enumerate(triggers):
        where = f"triggers[{index}] ({trigger.name})"
        flow = registry.get_by_name(trigger.flow)
        if flow is None:
            choices = ", ".join(sorted(registry.list_names())) or "none registered"
            problems.append(f"{where}: unknown flow {trigger.flow!r} (known: {choices})")
            continue
        entry = trigger.entry if isinstance(trigger, AmqpTrigger) else None
        try:
            # The engine's own rule decides, so check and run can never disagree.
            flow.resolve_entry(entry)
        except RoutiluxError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
