"""``shared_data`` / ``shared_log`` containers that tell their JobState what was written.

Logic writes them directly (``job_state.shared_data["k"] = v``). The JobState needs to
know which keys an activation touched so that only committed activations reach a
checkpoint; these thin subclasses report every write and otherwise behave as dict/list.
They hold their JobState weakly: a strong reference would make every JobState a
reference cycle that only the garbage collector can free.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, SupportsIndex

if TYPE_CHECKING:
    from routilux.job_state import JobState


class SharedData(dict[str, Any]):
    """A dict that reports each key it writes or deletes to its JobState."""

    def __init__(self, owner: JobState, *args: Any) -> None:
        super().__init__(*args)
        self._owner = weakref.ref(owner)

    def _on_write(self, key: Any) -> None:
        owner = self._owner()
        if owner is not None:
            owner._shared_written(key)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._on_write(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._on_write(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        changes = dict(*args, **kwargs)
        super().update(changes)
        for key in changes:
            self._on_write(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        value = super().pop(key, *default)
        self._on_write(key)
        return value

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self._on_write(key)
        return key, value

    def clear(self) -> None:
        keys = list(self)
        super().clear()
        for key in keys:
            self._on_write(key)

    def __ior__(self, other: Any) -> SharedData:  # type: ignore[override,misc]
        self.update(other)
        return self


class SharedLog(list[Any]):
    """A list that reports appended items, and any other change, to its JobState."""

    def __init__(self, owner: JobState, *args: Any) -> None:
        super().__init__(*args)
        self._owner = weakref.ref(owner)

    def _on_append(self, items: list[Any]) -> None:
        owner = self._owner()
        if owner is not None:
            owner._log_appended(items)

    def _on_rewrite(self) -> None:
        owner = self._owner()
        if owner is not None:
            owner._log_rewritten()

    def append(self, item: Any) -> None:
        super().append(item)
        self._on_append([item])

    def extend(self, items: Iterable[Any]) -> None:
        items = list(items)
        super().extend(items)
        self._on_append(items)

    def __iadd__(self, items: Iterable[Any]) -> SharedLog:  # type: ignore[misc]
        self.extend(items)
        return self

    def insert(self, index: SupportsIndex, item: Any) -> None:
        super().insert(index, item)
        self._on_rewrite()

    def pop(self, index: SupportsIndex = -1) -> Any:
        item = super().pop(index)
        self._on_rewrite()
        return item

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._on_rewrite()

    def clear(self) -> None:
        super().clear()
        self._on_rewrite()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._on_rewrite()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._on_rewrite()
