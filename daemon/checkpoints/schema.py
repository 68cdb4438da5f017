"""Connections, pragmas and the forward-only schema migrations of the SQLite store.

Tables (version 1):

* ``jobs`` — the contract table of DESIGN.md §4, one row per job.
* ``job_entries`` — entry parameters of claimed jobs, so a job claimed but never
  checkpointed (crash right after the claim) can still be started by resume.
* ``job_resumes`` — consecutive resumes without progress, for quarantine.
* ``schedule_runs`` — timer ledger: one row per (trigger, scheduled time) ever fired.
* ``outbox`` — reply_to results waiting to be published.
* ``store_meta`` — ``schema_version``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

import sqlite_utils

from daemon.checkpoints.errors import CheckpointStoreError, translate_sqlite_error

__all__ = [
    "SCHEMA_VERSION",
    "SYNCHRONOUS_MODES",
    "migrate",
    "open_read_connection",
    "open_write_connection",
]

#: The schema version this code writes; older databases are migrated forward on open.
SCHEMA_VERSION = 1
#: Accepted values of the ``store.synchronous`` setting.
SYNCHRONOUS_MODES: frozenset[str] = frozenset({"normal", "full"})


def open_write_connection(
    path: str,
    *,
    synchronous: str,
    busy_timeout_ms: int,
    pragmas: Mapping[str, int | str] | None = None,
) -> sqlite3.Connection:
    """Open the single write connection: WAL, busy_timeout, synchronous, extra pragmas.

    The connection is in autocommit mode (the writer issues BEGIN/COMMIT itself) and may
    be handed to another thread. Raises a CheckpointStoreError subclass naming ``path``.
    """
    if synchronous not in SYNCHRONOUS_MODES:
        raise CheckpointStoreError(path, f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointStoreError(path, f"cannot create directory: {exc}") from exc
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise translate_sqlite_error(path, exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CheckpointStoreError(path, f"cannot enable WAL mode (journal_mode is {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        for name, value in (pragmas or {}).items():
            if not name.isidentifier():
                raise CheckpointStoreError(path, f"invalid pragma name {name!r}")
            conn.execute(f"PRAGMA {name} = {int(value) if isinstance(value, int) else value}")
    except sqlite3.Error as exc:
        conn.close()
        raise translate_sqlite_error(path, exc) from exc
    except CheckpointStoreError:
        conn.close()
        raise
    return conn


def open_read_connection(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open a read-only connection (safe while the writer runs, thanks to WAL)."""
    if not Path(path).exists():
        raise CheckpointStoreError(path, "database file does not exist")
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except sqlite3.Error as exc:
        raise translate_sqlite_error(path, exc) from exc
    return conn


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step; return the version.

    Raises CheckpointStoreError if the file was written by a newer schema than this code knows.
    """
    db = sqlite_utils.Database(conn)
    try:
        version = _current_version(db)
        if version > SCHEMA_VERSION:
            raise CheckpointStoreError(
                path, f"schema version {version} is newer than supported ({SCHEMA_VERSION})"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                _MIGRATIONS[target](db)
                db.table("store_meta").upsert(
                    {"key": "schema_version", "value": str(target)}, pk="key"
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise translate_sqlite_error(path, exc) from exc
    return SCHEMA_VERSION


def _current_version(db: sqlite_utils.Database) -> int:
    if "store_meta" not in db.table_names():
        db.table("store_meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        return 0
    rows = list(db.query("SELECT value FROM store_meta WHERE key = 'schema_version'"))
    return int(rows[0]["value"]) if rows else 0


def _migrate_v1(db: sqlite_utils.Database) -> None:
    _create_jobs(db)
    _create_side_tables(db)


def _create_jobs(db: sqlite_utils.Database) -> None:
    """The contract table of DESIGN.md §4, column for column."""
    jobs = db.table("jobs")
    jobs.create(
        {
            "job_id": str,
            "flow_id": str,
            "status": str,
            "trigger": str,
            "dedupe_key": str,
            "created_at": str,
            "updated_at": str,
            "completed_at": str,
            "error": str,
            "state": str,
        },
        pk="job_id",
        not_null={"flow_id", "status", "created_at", "updated_at"},
    )
    jobs.create_index(["dedupe_key"], index_name="jobs_dedupe_key", unique=True)
    jobs.create_index(["status", "created_at"], index_name="jobs_status_created")
    jobs.create_index(["flow_id"], index_name="jobs_flow_id")


def _create_side_tables(db: sqlite_utils.Database) -> None:
    db.table("job_entries").create({"job_id": str, "entry_params": str}, pk="job_id")
    db.table("job_resumes").create(
        {"job_id": str, "resumes": int, "last_seq": int, "updated_at": str},
        pk="job_id",
        not_null={"resumes", "last_seq"},
    )
    db.table("schedule_runs").create(
        {"run_id": str, "trigger_id": str, "scheduled_at": str, "fired_at": str},
        pk="run_id",
        not_null={"trigger_id", "scheduled_at", "fired_at"},
    )
    db.table("schedule_runs").create_index(
        ["trigger_id", "scheduled_at"], index_name="schedule_runs_trigger"
    )
    db.table("outbox").create(
        {
            "job_id": str,
            "reply_to": str,
            "correlation_id": str,
            "body": str,
            "created_at": str,
            "published_at": str,
        },
        pk="job_id",
        not_null={"reply_to", "body", "created_at"},
    )


_MIGRATIONS: Mapping[int, Callable[[sqlite_utils.Database], None]] = {1: _migrate_v1}
