"""Fixtures for the daemon unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_support import REPO

from routilux import FlowRegistry


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run from the repo root (the example config's relative paths) with a clean registry."""
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO))
    registry = FlowRegistry.get_instance()
    before = set(registry.list_names())
    yield
    for name in set(registry.list_names()) - before:
        registry.unregister(name)
