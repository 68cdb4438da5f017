"""Read-only queries on the ``jobs`` table and their text rendering, for ``jobs list|show``.

Opens its own read-only connection, so it works on a store file whether or not a
daemon is writing to it (WAL lets readers and the writer run side by side), and it
never starts the store's writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from daemon.checkpoints import queries
from daemon.checkpoints.errors import StoreError as CheckpointStoreError
from daemon.checkpoints.records import JobRow
from daemon.checkpoints.schema import open_read_connection
from daemon.errors import StoreError

__all__ = ["JobRow", "format_detail", "format_table", "get_job", "list_jobs"]

#: How long a read waits for the writer's lock before giving up.
_BUSY_TIMEOUT_MS = 5000


def list_jobs(
    path: Path, status: str | None = None, flow: str | None = None, limit: int = 100
) -> list[JobRow]:
    """Newest first, at most ``limit`` jobs, optionally filtered by status and flow.

    Raises:
        StoreError: the file is missing, unreadable, or has no ``jobs`` table.
    """
    with _reading(path) as conn:
        return queries.list_jobs(conn, status, flow, limit)


def get_job(path: Path, job_id: str) -> JobRow | None:
    """The job ``job_id``, or None if the store has no such job.

    Raises:
        StoreError: the file is missing, unreadable, or has no ``jobs`` table.
    """
    with _reading(path) as conn:
        return queries.get_job(conn, job_id)


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn = open_read_connection(str(path), _BUSY_TIMEOUT_MS)
    except CheckpointStoreError as exc:
        raise StoreError(str(exc)) from None
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise StoreError(f"{path} is not a Routilux job store (no jobs table)") from None
        raise StoreError(f"cannot read {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    finally:
        conn.close()


def format_table(rows: list[JobRow]) -> str:
    """A fixed-width table of ``rows``; the error column is cut to keep one line per job."""
    header = ("JOB_ID", "FLOW", "STATUS", "TRIGGER", "CREATED_AT", "UPDATED_AT", "ERROR")
    lines = [header] + [
        (
            row.job_id,
            row.flow_id,
            row.status,
            row.trigger or "-",
            row.created_at,
            row.updated_at,
            _cut(row.error or "", 60),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in lines
    ]
    if not rows:
        out.append("(no jobs)")
    return "\n".join(text.rstrip() for text in out)


def format_detail(row: JobRow) -> str:
    """Status, timestamps, error, routine states and the pending work of one job."""
    state = row.state or {}
    lines = [
        f"job_id:        {row.job_id}",
        f"flow:          {row.flow_id}",
        f"status:        {row.status}",
        f"trigger:       {row.trigger or '-'}",
        f"dedupe_key:    {row.dedupe_key or '-'}",
        f"created_at:    {row.created_at}",
        f"started_at:    {state.get('started_at') or '-'}",
        f"updated_at:    {row.updated_at}",
        f"completed_at:  {row.completed_at or '-'}",
        f"error:         {row.error or '-'}",
    ]
    traceback_text = (state.get("error") or {}).get("traceback")
    if traceback_text:
        lines.append("traceback:")
        lines.extend("  " + line for line in str(traceback_text).rstrip().splitlines())
    lines.append("routine states:")
    routine_states = state.get("routine_states") or {}
    lines.extend(f"  {rid}: {json.dumps(rs, default=str)}" for rid, rs in routine_states.items())
    if not routine_states:
        lines.append("  (none)")
    lines.append("pending:")
    lines.extend(_pending_lines(state.get("pending") or {}))
    return "\n".join(lines)


def _pending_lines(pending: dict[str, Any]) -> list[str]:
    lines = []
    for rid, slots in (pending.get("slots") or {}).items():
        for slot, items in slots.items():
            if items:
                lines.append(f"  slot {rid}.{slot}: {len(items)} item(s)")
    for act in pending.get("activations") or []:
        lines.append(f"  activation {act.get('routine_id')} (attempt {act.get('attempt', 0)})")
    for timer in pending.get("timers") or []:
        target = timer.get("routine_id") or (timer.get("activation") or {}).get("routine_id")
        lines.append(f"  timer {timer.get('kind')} for {target} due {_due(timer.get('due'))}")
    for rid in pending.get("skipped_routines") or []:
        lines.append(f"  skipped routine {rid}")
    return lines or ["  (nothing)"]


def _due(value: Any) -> str:
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc).isoformat()
    except (TypeError, ValueError, OverflowError):
        return str(value)


def _cut(text: str, width: int) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 3] + "..."
