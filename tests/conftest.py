"""Fixtures shared by every test: a private flow registry, a runtime, a memory checkpointer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from memory_checkpointer import MemoryCheckpointer

from routilux import FlowRegistry, Runtime


@pytest.fixture
def registry() -> FlowRegistry:
    return FlowRegistry()


@pytest.fixture
def checkpointer() -> MemoryCheckpointer:
    return MemoryCheckpointer()


@pytest.fixture
def runtime(registry: FlowRegistry) -> Iterator[Runtime]:
    rt = Runtime(thread_pool_size=4, registry=registry)
    yield rt
    rt.shutdown(wait=True, timeout=10)
