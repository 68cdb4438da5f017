"""Pictures of a flow: Mermaid and Graphviz DOT text.

Example::

    >>> from routilux import Flow
    >>> print(to_mermaid(Flow("empty")))
    flowchart LR
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routilux.flow import Flow


def _node_id(routine_id: str) -> str:
    return "r_" + re.sub(r"\W", "_", routine_id)


def _policy_name(flow: Flow, routine_id: str) -> str:
    policy = flow.get_routine(routine_id).activation_policy
    if policy is None:
        return "immediate"
    try:
        description = policy.describe()
    except Exception:  # an unnamed custom policy still deserves a picture
        return "custom"
    args = ", ".join(f"{v}" for v in description.get("args", {}).values())
    return f"{description['name']}({args})" if args else str(description["name"])


def _label(flow: Flow, routine_id: str) -> str:
    routine = flow.get_routine(routine_id)
    entry = " ▶ entry" if routine_id == _entry_or_none(flow) else ""
    return f"{routine_id}{entry}<br/>{type(routine).__name__} · {_policy_name(flow, routine_id)}"


def _entry_or_none(flow: Flow) -> str | None:
    try:
        return flow.resolve_entry()[0]
    except ValueError:
        return None


def to_mermaid(flow: Flow) -> str:
    """Mermaid ``flowchart`` text: one node per routine, one edge per connection."""
    lines = ["flowchart LR"]
    for routine_id in flow.routines:
        lines.append(f'    {_node_id(routine_id)}["{_label(flow, routine_id)}"]')
    for c in flow.connections:
        lines.append(
            f'    {_node_id(c.source_id)} -->|"{c.event} → {c.slot}"| {_node_id(c.target_id)}'
        )
    return "\n".join(lines)


def to_dot(flow: Flow) -> str:
    """Graphviz DOT text of the same picture."""
    lines = [f'digraph "{flow.flow_id}" {{', "    rankdir=LR;", "    node [shape=box];"]
    for routine_id in flow.routines:
        label = _label(flow, routine_id).replace("<br/>", "\\n")
        lines.append(f'    {_node_id(routine_id)} [label="{label}"];')
    for c in flow.connections:
        lines.append(
            f"    {_node_id(c.source_id)} -> {_node_id(c.target_id)} "
            f'[label="{c.event} → {c.slot}"];'
        )
    lines.append("}")
    return "\n".join(lines)
