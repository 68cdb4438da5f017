"""The public surface of daemon.checkpoints is exactly what __all__ lists."""

from __future__ import annotations

import daemon.checkpoints as checkpoints
from daemon.checkpoints.memory import MemoryCheckpointStore
from daemon.checkpoints.sqlite import SqliteCheckpointStore


def test_all_is_sorted_and_every_name_exists() -> None:
    assert checkpoints.__all__ == sorted(checkpoints.__all__)
    assert all(hasattr(checkpoints, name) for name in checkpoints.__all__)


def test_every_protocol_method_exists_on_both_stores() -> None:
    members = {
        name
        for name in vars(checkpoints.CheckpointStore)
        if not name.startswith("_") and name != "path"
    }
    for store in (MemoryCheckpointStore, SqliteCheckpointStore):
        assert members <= set(dir(store)), store
