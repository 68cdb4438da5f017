"""Import-path helpers used by serialization: ``"package.module:QualName"``."""

from __future__ import annotations

import importlib
from typing import Any

from routilux.errors import SerializationError


def import_path(path: str) -> Any:
    """Return the object named by ``"module:qualname"`` (``"module.qualname"`` also works)."""
    module_name, sep, qualname = path.partition(":")
    if not sep:
        module_name, _, qualname = path.rpartition(".")
    if not module_name or not qualname:
        raise SerializationError(f"{path!r} is not an import path like 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SerializationError(
            f"cannot import module {module_name!r} for {path!r}: {exc}"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SerializationError(f"{module_name!r} has no attribute {qualname!r}") from None
    return obj


def path_of(obj: Any) -> str:
    """The import path of a module-level class or function; raises if it has none."""
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    if not qualname or not module or "<locals>" in qualname or "<lambda>" in qualname:
        raise SerializationError(
            f"{obj!r} is not importable by name; define it at module level to serialize it"
        )
    return f"{module}:{qualname}"
