"""Typed reading of parsed TOML tables, with faults that name the dotted field and its line.

Lines come from the one line finder, `tandem.wire.tomlconfig.line_of`
(re-exported here for the rules loader).
"""

from __future__ import annotations

import math
import re
from typing import Any

from tandem.wire.tomlconfig import line_of

__all__ = ["FieldFault", "Table", "line_of"]



class FieldFault(Exception):
    """A value that cannot be used; `field` is its dotted path (`rule[0].when.above`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Table:
    """One TOML table being read; `finish()` refuses the keys nobody asked for."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise FieldFault(where or "document", f"expected a table, got {_show(data)}")
        self.data: dict[str, Any] = data
        self.where = where
        self._used: set[str] = set()

    def path(self, key: str) -> str:
        """The dotted path of one of this table's keys."""
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        """Whether the key is present (and counts it as read)."""
        self._used.add(key)
        return key in self.data

    def raw(self, key: str) -> Any:
        """The value as parsed, None when absent."""
        self._used.add(key)
        return self.data.get(key)

    def text(self, key: str, default: str | None = None, pattern: str = r".+",
             max_len: int = 64) -> str:
        """A string matching `pattern` (whole) of at most `max_len` characters."""
        value = self._present(key, default)
        if not isinstance(value, str) or len(value) > max_len \
                or not re.fullmatch(pattern, value):
            raise FieldFault(self.path(key), f"expected text matching {pattern} of at most "
                             f"{max_len} characters, got {_show(value)}")
        return value

    def integer(self, key: str, default: int | None, low: int, high: int) -> int:
        """An integer in low..high."""
        value = self._present(key, default)
        if type(value) is not int or not low <= value <= high:
            raise FieldFault(self.path(key), f"expected an integer in {low}..{high}, "
                             f"got {_show(value)}")
        return value

    def number(self, key: str, default: float | None = None,
               low: float = -math.inf, high: float = math.inf) -> float:
        """A finite number in low..high."""
        value = self._present(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or not low <= value <= high:
            raise FieldFault(self.path(key), f"expected a number in {low:g}..{high:g}, "
                             f"got {_show(value)}")
        return float(value)

    def names(self, key: str) -> tuple[str, ...]:
        """A list of strings (empty when absent)."""
        value = self._present(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FieldFault(self.path(key), f"expected a list of names, got {_show(value)}")
        return tuple(value)

    def finish(self) -> None:
        """Fail on the first key that no reader asked for (a typo, usually)."""
        for key in self.data:
            if key not in self._used:
                known = ", ".join(sorted(self._used)) or "none"
                raise FieldFault(self.path(key), f"unknown field (known: {known})")

    def _present(self, key: str, default: Any) -> Any:
        self._used.add(key)
        if key in self.data:
            return self.data[key]
        if default is None:
            raise FieldFault(self.path(key), "required field missing")
        return default


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
