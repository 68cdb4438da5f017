"""Read-side SQL of the SQLite store; every function takes a (read-only) connection."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from daemon.checkpoints.records import JobRow, OutboxEntry, UnfinishedJob

__all__ = [
    "get_job",
    "last_schedule_run",
    "list_jobs",
    "oldest_unfinished_created_at",
    "pending_outbox",
    "unfinished_jobs",
]

_COLUMNS = (
    "job_id, flow_id, status, trigger, dedupe_key, created_at, updated_at, completed_at,"
    " error, state"
)


def _job_row(row: tuple[Any, ...]) -> JobRow:
    return JobRow(
        job_id=row[0],
        flow_id=row[1],
        status=row[2],
        trigger=row[3],
        dedupe_key=row[4],
        created_at=row[5],
        updated_at=row[6],
        completed_at=row[7],
        error=row[8],
        state=_parse_state(row[9]),
    )


def _parse_state(text: str | None) -> dict[str, Any] | None:
    # A torn or foreign value must not make a whole listing unreadable.
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def get_job(conn: sqlite3.Connection, job_id: str) -> JobRow | None:
    """The job with ``job_id``, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return _job_row(row) if row is not None else None


def list_jobs(
    conn: sqlite3.Connection, status: str | None, flow: str | None, limit: int | None
) -> list[JobRow]:
    """Jobs filtered by status and flow, newest first, at most ``limit`` (None: all)."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if flow is not None:
        where.append("flow_id = ?")
        params.append(flow)
    sql = f"SELECT {_COLUMNS} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, job_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [_job_row(r) for r in conn.execute(sql, params).fetchall()]


def oldest_unfinished_created_at(conn: sqlite3.Connection) -> str | None:
    """created_at of the oldest pending/running job, or None."""
    row = conn.execute(
        "SELECT MIN(created_at) FROM jobs WHERE status IN ('pending', 'running')"
    ).fetchone()
    return row[0] if row is not None else None


def unfinished_jobs(conn: sqlite3.Connection) -> list[UnfinishedJob]:
    """Every pending/running job, oldest first, with its entry params if it was claimed."""
    rows = conn.execute(
        "SELECT jobs.job_id, jobs.flow_id, jobs.state, job_entries.entry_params FROM jobs"
        " LEFT JOIN job_entries ON job_entries.job_id = jobs.job_id"
        " WHERE jobs.status IN ('pending', 'running') ORDER BY jobs.created_at, jobs.job_id"
    ).fetchall()
    return [
        UnfinishedJob(
            job_id=r[0],
            flow_id=r[1],
            state=json.loads(r[2]) if r[2] is not None else None,
            entry_params=json.loads(r[3]) if r[3] is not None else None,
        )
        for r in rows
    ]


def last_schedule_run(conn: sqlite3.Connection, trigger_id: str) -> str | None:
    """The latest scheduled time recorded for ``trigger_id``, or None."""
    row = conn.execute(
        "SELECT scheduled_at FROM schedule_runs WHERE trigger_id = ?"
        " ORDER BY julianday(scheduled_at) DESC LIMIT 1",
        (trigger_id,),
    ).fetchone()
    return row[0] if row is not None else None


def pending_outbox(conn: sqlite3.Connection, limit: int) -> list[OutboxEntry]:
    """Unpublished replies, oldest first."""
    rows = conn.execute(
        "SELECT job_id, reply_to, correlation_id, body FROM outbox"
        " WHERE published_at IS NULL ORDER BY created_at LIMIT ?",
        (int(limit),),
    ).fetchall()
    return [OutboxEntry(r[0], r[1], r[2], json.loads(r[3])) for r in rows]
