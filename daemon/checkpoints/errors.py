"""Store exceptions, each a one-line message that names the database path.

Tree (``StoreError`` is ``daemon.errors.StoreError``, a ``DaemonError``)::

    StoreError
    └── CheckpointStoreError        any checkpoint-store failure; ``path`` names the file
        ├── StoreLockedError        another process holds the write lock past busy_timeout
        ├── StoreReadOnlyError      the file or its directory is not writable
        ├── StoreCorruptError       not a SQLite database, or a malformed one
        ├── StoreFullError          the disk (or max_page_count) is full
        ├── StoreClosedError        the store was closed
        └── StoreUnavailableError   a synchronous request timed out (e.g. writer unhealthy)
"""

from __future__ import annotations

import sqlite3

from daemon.errors import StoreError

__all__ = [
    "CheckpointStoreError",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreUnavailableError",
    "translate_sqlite_error",
]


class CheckpointStoreError(StoreError):
    """A checkpoint-store failure; ``path`` names the database file."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"checkpoint store {path}: {detail}")
        self.path = path
        self.detail = detail


class StoreLockedError(CheckpointStoreError):
    """The database stayed locked by another connection past busy_timeout."""


class StoreReadOnlyError(CheckpointStoreError):
    """The database file or its directory cannot be written."""


class StoreCorruptError(CheckpointStoreError):
    """The file is not a SQLite database or its contents are malformed."""


class StoreFullError(CheckpointStoreError):
    """The disk is full (or the database reached its max_page_count)."""


class StoreClosedError(CheckpointStoreError):
    """The store was used after close()."""


class StoreUnavailableError(CheckpointStoreError):
    """A synchronous request could not be completed within its timeout."""


#: SQLite primary result codes (extended code & 0xFF) mapped to our classes.
_BY_CODE: dict[int, type[CheckpointStoreError]] = {
    5: StoreLockedError,  # SQLITE_BUSY
    6: StoreLockedError,  # SQLITE_LOCKED
    8: StoreReadOnlyError,  # SQLITE_READONLY
    11: StoreCorruptError,  # SQLITE_CORRUPT
    13: StoreFullError,  # SQLITE_FULL
    14: StoreReadOnlyError,  # SQLITE_CANTOPEN: usually a missing or unwritable directory
    26: StoreCorruptError,  # SQLITE_NOTADB
}

#: Fallback for Python < 3.11, whose exceptions carry no error code.
_BY_TEXT: tuple[tuple[str, type[CheckpointStoreError]], ...] = (
    ("locked", StoreLockedError),
    ("readonly", StoreReadOnlyError),
    ("read-only", StoreReadOnlyError),
    ("not a database", StoreCorruptError),
    ("malformed", StoreCorruptError),
    ("disk is full", StoreFullError),
    ("unable to open", StoreReadOnlyError),
)


def translate_sqlite_error(path: str, exc: sqlite3.Error) -> CheckpointStoreError:
    """Return the CheckpointStoreError subclass describing ``exc`` for the store at ``path``."""
    code = getattr(exc, "sqlite_errorcode", None)
    cls: type[CheckpointStoreError] = CheckpointStoreError
    if isinstance(code, int) and (code & 0xFF) in _BY_CODE:
        cls = _BY_CODE[code & 0xFF]
    else:
        text = str(exc).lower()
        cls = next((c for key, c in _BY_TEXT if key in text), CheckpointStoreError)
    return cls(path, str(exc))
