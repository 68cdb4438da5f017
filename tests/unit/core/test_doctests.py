"""Every example in routilux's docstrings runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import routilux

MODULES = sorted(m.name for m in pkgutil.walk_packages(routilux.__path__, prefix="routilux."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
