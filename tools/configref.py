"""The configuration reference page, generated from the config types (docs/configuration.md).

    python -m tandem.tools.configref > docs/configuration.md

tests/tools/test_configref.py fails when the committed page and the types differ.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tandem.cloud.config import ENV_PREFIX as CLOUD_ENV
from tandem.cloud.config import CloudConfig
from tandem.gateway.config import ENV_PREFIX as GATEWAY_ENV
from tandem.gateway.config import GatewayConfig
from tandem.gateway.modbus.registers import MapFile
from tandem.tools.boards import BoardFile

HEADER = """# Configuration reference

Generated from the config types by `python -m tandem.tools.configref`; do not edit.
Commented examples: docs/examples/. Errors read `file:line: field: problem`.
Environment overrides: `<PREFIX><SECTION>_<FIELD>` in upper case (top-level fields
`<PREFIX><FIELD>`); string and path values are taken as is, others parsed as TOML.
"""


def render() -> str:
    """The whole page."""
    parts = [HEADER]
    for title, cls, prefix in (("gateway.toml", GatewayConfig, GATEWAY_ENV),
                               ("cloud.toml", CloudConfig, CLOUD_ENV)):
        parts.append(f"\n## {title} (environment prefix `{prefix}`)\n")
        parts.extend(_tables(cls, ""))
    parts.append("\n## hw/boards/<board>.toml (read by the tools; no environment overrides)\n")
    parts.extend(_tables(BoardFile, ""))
    parts.append("\n## hw/registers/<map>.toml (register maps; no environment overrides)\n")
    parts.extend(_tables(MapFile, ""))
    return "".join(parts)


def _tables(cls: Any, name: str, array: bool = False) -> Iterator[str]:
    """One table per section, nested sections and arrays of tables after it."""
    heading = (f"[[{name}]]" if array else f"[{name}]") if name else "top level"
    doc = inspect.getdoc(cls) or ""
    rows = ["| field | type | default | bounds |", "|---|---|---|---|"]
    nested: list[tuple[Any, str, bool]] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = typing.get_type_hints(cls, include_extras=True)[f.name]
        inner = _section_type(hint)
        if inner is not None:
            path = f"{name}.{f.name}" if name else f.name
            nested.append((inner, path, typing.get_origin(_strip(hint)) is tuple))
            continue
        rows.append(f"| `{f.name}` | {_type(hint)} | {_default(f)} | {_bounds(hint)} |")
    if len(rows) > 2:
        yield f"\n### {heading}\n\n{doc.splitlines()[0] if doc else ''}\n\n" + \
            "\n".join(rows) + "\n"
    for inner, path, is_array in nested:
        yield from _tables(inner, path, is_array)


def _section_type(hint: Any) -> Any:
    """The dataclass a field holds (or holds a tuple of), else None."""
    base = _strip(hint)
    if dataclasses.is_dataclass(base):
        return base
    args = typing.get_args(base)
    if typing.get_origin(base) is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    optional = [a for a in args if a is not type(None)]
    if type(None) in args and len(optional) == 1 and dataclasses.is_dataclass(optional[0]):
        return optional[0]  # an optional table, e.g. [flash]
    return None


def _strip(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def _type(hint: Any) -> str:
    base = _strip(hint)
    if isinstance(base, types.UnionType) or typing.get_origin(base) is typing.Union:
        return " or ".join(_type(a) for a in typing.get_args(base))
    if typing.get_origin(base) is typing.Literal:
        return " \\| ".join(f"`{a!r}`" for a in typing.get_args(base))
    if typing.get_origin(base) is tuple:
        return f"list of {_type(typing.get_args(base)[0])}"
    if base is type(None):
        return "unset"
    if base is Path:
        return "path"
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return " \\| ".join(f"`'{m.value}'`" for m in base)
    return {int: "integer", float: "number", bool: "true/false", str: "text"}.get(
        base, getattr(base, "__name__", str(base)))


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is dataclasses.MISSING:
        if f.default_factory is not dataclasses.MISSING:  # an empty table by default
            return "empty"
        return "required"
    value = f.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f'`"{value}"`' if isinstance(value, str | Path) else f"`{value!r}`"


def _bounds(hint: Any) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=",
             "max_length": "length <="}
    found = []
    for meta in typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated \
            else ():
        for item in getattr(meta, "metadata", [meta]):
            for attr, word in words.items():
                if getattr(item, attr, None) is not None:
                    found.append(f"{word} {getattr(item, attr):g}" if attr[1] in "et"
                                 else f"{word} {getattr(item, attr)}")
    return ", ".join(found)


def main() -> None:
    """Print the page."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
