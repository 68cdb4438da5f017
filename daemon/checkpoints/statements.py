"""Write-side SQL of the SQLite store: each function runs inside the writer's transaction.

Every function takes the writer's connection first and never commits: the writer
wraps a whole group (snapshots plus requests) in one ``BEGIN IMMEDIATE … COMMIT``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from daemon.checkpoints.records import (
    TERMINAL_STATUSES,
    ClaimRequest,
    error_text,
    next_resume_counts,
    stalled_jobs,
    utc_now_iso,
)
from daemon.json_text import dumps

__all__ = [
    "add_outbox",
    "claim_job",
    "claim_jobs",
    "claim_schedule_run",
    "finish_outbox",
    "get_probe",
    "key_owners",
    "mark_failed",
    "prune_finished",
    "record_resumes",
    "set_probe",
    "snapshot_row",
    "snapshot_row_values",
    "stalled",
    "upsert_snapshots",
]

#: Rows per multi-row statement at most: 8 parameters a row stays within 999, the
#: parameter limit of SQLite before 3.32.
MAX_ROWS_PER_STATEMENT = 124


@functools.cache
def _upsert_sql(rows: int) -> str:
    """Insert or refresh ``rows`` jobs from snapshots. A terminal row is never
    overwritten, so a job's terminal status is recorded exactly once.
    trigger/dedupe_key come from claim()."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return f"""
INSERT INTO jobs (job_id, flow_id, status, created_at, updated_at, completed_at, error, state)
VALUES {values}
ON CONFLICT (job_id) DO UPDATE SET
    flow_id = excluded.flow_id, status = excluded.status, updated_at = excluded.updated_at,
    completed_at = excluded.completed_at, error = excluded.error, state = excluded.state
WHERE jobs.status NOT IN ('completed', 'failed', 'cancelled')
"""


def upsert_snapshots(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Write ``snapshot_row`` tuples, many rows per statement.

    Not executemany: the sqlite3 module releases the GIL around every statement step,
    and with busy Runtime threads each re-acquisition waits out a switch interval, so
    one row per step held the writer to a few dozen rows a second. Chunk sizes halve
    from MAX_ROWS_PER_STATEMENT, so a handful of prepared statements serve every size.
    """
    start, size = 0, MAX_ROWS_PER_STATEMENT
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        chunk = rows[start : start + size]
        conn.execute(_upsert_sql(size), [value for row in chunk for value in row])
        start += size


_TERMINAL_SQL = "('completed', 'failed', 'cancelled')"


def snapshot_row(snapshot: dict[str, Any], now: str) -> tuple[Any, ...]:
    """The upsert_snapshots row of one snapshot (JSON encoding, by
    :func:`daemon.json_text.dumps`, happens here).

    Raises TypeError if the snapshot holds a value of no JSON form.
    """
    values = snapshot_row_values(snapshot, now)
    return (*values, dumps(snapshot))


def snapshot_row_values(snapshot: dict[str, Any], now: str) -> tuple[Any, ...]:
    """The column values of a snapshot's row, without ``state``."""
    status = str(snapshot.get("status", "pending"))
    completed_at = snapshot.get("completed_at")
    if status in TERMINAL_STATUSES and not completed_at:
        completed_at = now
    return (
        snapshot["job_id"],
        snapshot.get("flow_id") or "",
        status,
        snapshot.get("created_at") or now,
        now,
        completed_at,
        error_text(snapshot.get("error")),
    )


def claim_job(
    conn: sqlite3.Connection,
    job_id: str,
    flow_id: str,
    trigger: str | None,
    dedupe_key: str | None,
    entry_params: dict[str, Any] | None,
) -> tuple[str, bool]:
    """Insert a pending job unless its id or dedupe_key exists; return (job_id, created)."""
    now = utc_now_iso()
    cur = conn.execute(
        "INSERT OR IGNORE INTO jobs (job_id, flow_id, status, trigger, dedupe_key,"
        " created_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?)",
        (job_id, flow_id, trigger, dedupe_key, now, now),
    )
    if cur.rowcount == 1:
        params = dumps(entry_params if entry_params is not None else {})
        conn.execute(
            "INSERT OR REPLACE INTO job_entries (job_id, entry_params) VALUES (?, ?)",
            (job_id, params),
        )
        return job_id, True
    if dedupe_key is not None:
        row = conn.execute("SELECT job_id FROM jobs WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
        if row is not None:
            return str(row[0]), False
    return job_id, False


def claim_jobs(conn: sqlite3.Connection, claims: Sequence[ClaimRequest]) -> list[tuple[str, bool]]:
    """``claim_job`` for many jobs, in order, with a few statements per chunk of claims.

    A claim whose id or dedupe_key exists already (in the table, or earlier in
    ``claims``) gets ``(owner's job_id, False)``. As in upsert_snapshots, the point is
    to step SQLite a fixed number of times per chunk, not once per row: the ids that
    existed and the owners of the keys come back as one aggregated JSON row each.
    """
    results: list[tuple[str, bool]] = []
    for start in range(0, len(claims), MAX_ROWS_PER_STATEMENT):
        results.extend(_claim_chunk(conn, claims[start : start + MAX_ROWS_PER_STATEMENT]))
    return results


def _claim_chunk(
    conn: sqlite3.Connection, claims: Sequence[ClaimRequest]
) -> list[tuple[str, bool]]:
    now = utc_now_iso()
    rows = ", ".join(["(?, ?, 'pending', ?, ?, ?, ?)"] * len(claims))
    cursor = conn.execute(
        "INSERT OR IGNORE INTO jobs (job_id, flow_id, status, trigger, dedupe_key,"
        f" created_at, updated_at) VALUES {rows}",
        [v for c in claims for v in (c.job_id, c.flow_id, c.trigger, c.dedupe_key, now, now)],
    )
    inserted = cursor.rowcount  # this statement's rows (total_changes is a wrapping C int)
    if inserted == len(claims):  # the usual case: every claim is new
        results = [(c.job_id, True) for c in claims]
    else:
        results = _sort_out_claims(conn, claims, inserted, cursor.lastrowid)
    entries = [
        (c.job_id, dumps(c.entry_params if c.entry_params is not None else {}))
        for c, (_, created) in zip(claims, results, strict=True)
        if created
    ]
    if entries:
        conn.execute(
            "INSERT OR REPLACE INTO job_entries (job_id, entry_params) VALUES "
            + ", ".join(["(?, ?)"] * len(entries)),
            [v for entry in entries for v in entry],
        )
    return results


def _sort_out_claims(
    conn: sqlite3.Connection,
    claims: Sequence[ClaimRequest],
    inserted: int,
    last_rowid: int | None,
) -> list[tuple[str, bool]]:
    """Which claims of a partly ignored insert created their job, and who owns the rest.

    The rows one INSERT adds get consecutive rowids ending at ``last_rowid``, so the
    new ones are the ``inserted`` highest; every other claim's id or key was taken.
    """
    created: set[str] = set()
    if inserted and last_rowid is not None:
        created = set(
            _json_column(
                conn,
                "SELECT json_group_array(job_id) FROM jobs WHERE rowid > ?",
                [last_rowid - inserted],
            )
        )
    keys = [c.dedupe_key for c in claims if c.dedupe_key is not None]
    owners: dict[str, str] = {}
    if keys:
        query = (
            "SELECT json_group_array(json_array(dedupe_key, job_id)) FROM jobs"
            f" WHERE dedupe_key IN ({', '.join('?' * len(keys))})"
        )
        owners = {key: job for key, job in _json_column(conn, query, keys)}
    results: list[tuple[str, bool]] = []
    for claim in claims:
        key = claim.dedupe_key
        owner = owners.get(key, claim.job_id) if key is not None else claim.job_id
        is_new = claim.job_id in created and owner == claim.job_id
        if is_new:
            created.discard(claim.job_id)  # the same id again in this call is a duplicate
        results.append((owner, is_new))
    return results


def key_owners(conn: sqlite3.Connection, keys: Collection[str]) -> dict[str, str]:
    """The jobs that own ``keys`` as their dedupe_key: key -> job_id (unknown keys absent)."""
    wanted = list(keys)
    owners: dict[str, str] = {}
    # The parameter limit (999 before SQLite 3.32) bounds one IN list.
    for start in range(0, len(wanted), 900):
        chunk = wanted[start : start + 900]
        cursor = conn.execute(
            "SELECT dedupe_key, job_id FROM jobs WHERE dedupe_key IN"
            f" ({', '.join(['?'] * len(chunk))})",
            chunk,
        )
        owners.update(cursor.fetchall())
    return owners


def _json_column(conn: sqlite3.Connection, query: str, params: Sequence[Any]) -> list[Any]:
    """The JSON array that an aggregate ``query`` returns in its one row, decoded."""
    text = conn.execute(query, params).fetchone()[0]
    return list(json.loads(text)) if text else []


def mark_failed(conn: sqlite3.Connection, job_id: str, reason: str) -> bool:
    """Fail an unfinished job with ``reason`` (also written into its snapshot); True if changed."""
    now = utc_now_iso()
    cur = conn.execute(
        "UPDATE jobs SET status = 'failed', error = ?, updated_at = ?, completed_at = ?,"
        " state = CASE WHEN state IS NULL THEN NULL ELSE json_set(state, '$.status', 'failed',"
        " '$.completed_at', ?, '$.error', json_object('type', 'StoreError', 'message', ?))"
        f" END WHERE job_id = ? AND status NOT IN {_TERMINAL_SQL}",
        (reason, now, now, now, reason, job_id),
    )
    return cur.rowcount == 1


def _previous_resumes(
    conn: sqlite3.Connection, jobs: Sequence[tuple[str, int]]
) -> dict[str, tuple[int, int]]:
    previous: dict[str, tuple[int, int]] = {}
    for job_id, _ in jobs:
        row = conn.execute(
            "SELECT resumes, last_seq FROM job_resumes WHERE job_id = ?", (job_id,)
        ).fetchone()
        if row is not None:
            previous[job_id] = (int(row[0]), int(row[1]))
    return previous


def record_resumes(
    conn: sqlite3.Connection, jobs: Sequence[tuple[str, int]], charge: Collection[str] | None
) -> dict[str, int]:
    """Record one resume per ``(job_id, seq)``; return stalled resumes charged so far.

    See ``records.next_resume_counts`` for which stalled jobs are charged.
    """
    counts = next_resume_counts(jobs, _previous_resumes(conn, jobs), charge)
    now = utc_now_iso()
    conn.executemany(
        "INSERT OR REPLACE INTO job_resumes (job_id, resumes, last_seq, updated_at)"
        " VALUES (?, ?, ?, ?)",
        [(job_id, count, seq, now) for job_id, (count, seq) in counts.items()],
    )
    return {job_id: count for job_id, (count, _) in counts.items()}


def stalled(conn: sqlite3.Connection, jobs: Sequence[tuple[str, int]]) -> set[str]:
    """Which of ``jobs`` were resumed before and made no progress since."""
    return stalled_jobs(jobs, _previous_resumes(conn, jobs))


def set_probe(conn: sqlite3.Connection, job_id: str | None) -> None:
    """Record (or clear) the job being resumed on probation."""
    if job_id is None:
        conn.execute("DELETE FROM store_meta WHERE key = 'probing'")
    else:
        conn.execute(
            "INSERT OR REPLACE INTO store_meta (key, value) VALUES ('probing', ?)", (job_id,)
        )


def get_probe(conn: sqlite3.Connection) -> str | None:
    """The job that was on probation when the store was last written, if any."""
    row = conn.execute("SELECT value FROM store_meta WHERE key = 'probing'").fetchone()
    return str(row[0]) if row is not None else None


def prune_finished(conn: sqlite3.Connection, cutoff: str) -> int:
    """Delete terminal jobs completed before ``cutoff`` (ISO-8601) and their side rows."""
    cur = conn.execute(
        f"DELETE FROM jobs WHERE status IN {_TERMINAL_SQL}"
        " AND julianday(COALESCE(completed_at, updated_at)) < julianday(?)",
        (cutoff,),
    )
    for table in ("job_entries", "job_resumes", "outbox"):
        conn.execute(
            f"DELETE FROM {table} WHERE NOT EXISTS"
            f" (SELECT 1 FROM jobs WHERE jobs.job_id = {table}.job_id)"
            + (" AND published_at IS NOT NULL" if table == "outbox" else "")
        )
    conn.execute(
        "DELETE FROM schedule_runs WHERE julianday(scheduled_at) < julianday(?)", (cutoff,)
    )
    return cur.rowcount


def claim_schedule_run(conn: sqlite3.Connection, trigger_id: str, scheduled_at: str) -> bool:
    """Record that the run of ``trigger_id`` at ``scheduled_at`` fires; False if it already did."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO schedule_runs (run_id, trigger_id, scheduled_at, fired_at)"
        " VALUES (?, ?, ?, ?)",
        (f"{trigger_id}@{scheduled_at}", trigger_id, scheduled_at, utc_now_iso()),
    )
    return cur.rowcount == 1


def add_outbox(
    conn: sqlite3.Connection,
    job_id: str,
    reply_to: str,
    correlation_id: str | None,
    body: dict[str, Any],
) -> bool:
    """Queue a reply for ``job_id`` once; False if one is already queued or published."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO outbox (job_id, reply_to, correlation_id, body, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (job_id, reply_to, correlation_id, dumps(body), utc_now_iso()),
    )
    return cur.rowcount == 1


def finish_outbox(conn: sqlite3.Connection, job_id: str) -> bool:
    """Mark the reply of ``job_id`` published; True if it was pending."""
    cur = conn.execute(
        "UPDATE outbox SET published_at = ? WHERE job_id = ? AND published_at IS NULL",
        (utc_now_iso(), job_id),
    )
    return cur.rowcount == 1
