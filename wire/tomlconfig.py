"""TOML -> typed, bounded, frozen dataclasses; every fault reads `file:line: field: problem`.

The one configuration layer for the gateway, the cloud and the tools: each
package declares its sections as pydantic dataclasses (frozen, unknown keys
refused) with bounds next to the fields, and loads them through `load`.

Why pydantic and not msgspec (measured on the same wrong inputs): pydantic
reports every fault with a structured location, `('coap', 'units', 1,
'unit_id')`, points an unknown or missing key at the key itself, keeps the
offending value and reports all faults at once; msgspec gives one fault, its
location only inside the message text (`at $.coap`) and names an unknown key's
table rather than the key, so its line would be the table header. Pydantic's
dataclasses are still dataclasses: `dataclasses.replace`, positional
construction and `FrozenInstanceError` keep working for the code around them.

One environment rule for every program: `<PREFIX><SECTION>_<FIELD>` (top-level
fields `<PREFIX><FIELD>`), upper case. The text is taken as is for string and
path fields and parsed as a TOML value otherwise (`8000`, `true`, `["a", "b"]`);
relative paths from the environment resolve against the current directory,
those in the file against the file's folder. An unknown variable under the
prefix is an error, so a typo cannot silently leave a default in place.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import BeforeValidator, ConfigDict, Strict, TypeAdapter, ValidationInfo

T = TypeVar("T")

SECTION = ConfigDict(extra="forbid", allow_inf_nan=False)
"""The pydantic config of every section: unknown keys refused, floats finite."""

Int = Annotated[int, Strict()]
"""An integer, never a bool, a float or a numeric string."""
Float = Annotated[float, Strict()]
"""A finite number (integers accepted), never a bool or a string."""
Flag = Annotated[bool, Strict()]
"""true or false, never 1 or "yes"."""


def _not_a_flag(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true or false")
    return value


NotFlag = BeforeValidator(_not_a_flag)
"""For `Annotated[Literal[1], NotFlag]`: literals compare equal to True, so refuse bools first."""


def _relative_to_file(value: Any, info: ValidationInfo) -> Any:
    """Paths in a file are relative to its folder; an empty string is no path."""
    if isinstance(value, str):
        if not value:
            raise ValueError("expected a non-empty path")
        base = (info.context or {}).get("base")
        return (base / value).resolve() if base is not None else Path(value)
    return value


FilePath = Annotated[Path, BeforeValidator(_relative_to_file)]
"""A path; relative ones resolve against the config file's folder."""


class ConfigError(ValueError):
    """A configuration that cannot be used; the message reads `file:line: field: problem`."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class FieldError(ValueError):
    """Raised in a section's `__post_init__` to blame one of its fields (cross-field rules)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Document:
    """A parsed TOML file: its data, its text (for line numbers) and where it came from."""

    source: str
    text: str
    data: dict[str, Any]
    base: Path
    from_env: dict[str, str] = field(default_factory=dict)  # dotted field -> variable
    # Show an array item's `name` beside its index in faults: `point[7] (temp_alarm).scale`.
    name_items: bool = False

    def fault(self, dotted: str, problem: str,
              error: type[ConfigError] = ConfigError) -> ConfigError:
        """A ConfigError for one field: `file:line: field: problem` (or names the variable)."""
        if dotted in self.from_env:
            return error(f"{self.from_env[dotted]} (environment): {dotted}: {problem}", dotted)
        line = line_of(self.text, dotted) if self.text else None
        where = f"{self.source}:{line}" if line else self.source
        shown = _with_names(dotted, self.data) if self.name_items else dotted
        return error(f"{where}: {shown}: {problem}" if dotted else f"{where}: {problem}",
                     dotted)


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> Document:
    """Read and parse a TOML file; unreadable or malformed files raise `error`."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_toml(text, str(path), path.resolve().parent, error)


def parse_toml(text: str, source: str, base: Path,
               error: type[ConfigError] = ConfigError) -> Document:
    """Parse TOML text into a Document; syntax errors name the source and tomllib's line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None
    return Document(source, text, data, base)


def convert(cls: type[T], doc: Document, error: type[ConfigError] = ConfigError) -> T:
    """Validate the document into `cls`; the first fault becomes a located ConfigError."""
    try:
        return _adapter(cls).validate_python(doc.data, context={"base": doc.base})
    except pydantic.ValidationError as exc:
        dotted, problem = describe(exc.errors()[0])
        raise doc.fault(dotted, problem, error) from None
    except RecursionError:
        raise error(f"{doc.source}: nested too deeply") from None


def load(cls: type[T], path: Path, prefix: str = "", environ: Mapping[str, str] | None = None,
         error: type[ConfigError] = ConfigError) -> T:
    """Read `path`, apply `prefix` environment overrides, and validate into `cls`."""
    doc = read_toml(path, error)
    if prefix:
        doc = with_env(doc, cls, prefix, environ or {}, error)
    return convert(cls, doc, error)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(cls: type[T]) -> TypeAdapter[T]:
    """One cached TypeAdapter per type (building one compiles a validator)."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def describe(error: Any) -> tuple[str, str]:
    """(dotted field, problem) of one pydantic error, in this project's words."""
    loc = tuple(error["loc"])
    kind = error["type"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        return dotted_field((*loc, *cause.field.split("."))), cause.problem
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return dotted_field(loc), "unknown field"
    if kind == "missing":
        return dotted_field(loc), "required field missing"
    if kind in ("dataclass_type", "dict_type", "model_type"):
        return dotted_field(loc), f"expected a table, got {_show(error['input'])}"
    message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be ",
                                                                          "expected ", 1)
    message = message[:1].lower() + message[1:]
    return dotted_field(loc), f"{message}, got {_show(error['input'])}"


def dotted_field(loc: tuple[Any, ...]) -> str:
    """('modbus', 'bus', 1, 'port') -> 'modbus.bus[1].port'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part):
            text += f".{part}" if text else str(part)
    return text


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- environment overrides ----------------------------------------------------

def env_targets(cls: type[Any], prefix: str) -> dict[str, tuple[str, ...]]:
    """Every variable the rule allows for `cls`: name -> (section, field) or (field,)."""
    targets: dict[str, tuple[str, ...]] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = _hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            for inner in dataclasses.fields(hint):
                targets[f"{prefix}{f.name}_{inner.name}".upper()] = (f.name, inner.name)
        else:
            targets[f"{prefix}{f.name}".upper()] = (f.name,)
    return targets


def with_env(doc: Document, cls: type[Any], prefix: str, environ: Mapping[str, str],
             error: type[ConfigError] = ConfigError, ignore: tuple[str, ...] = ()) -> Document:
    """A copy of `doc` with `prefix` variables laid over its values (see the module docstring)."""
    targets = env_targets(cls, prefix)
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.data.items()}
    from_env: dict[str, str] = {}
    for var, text in sorted(environ.items()):
        if not var.startswith(prefix) or var in ignore:
            continue
        if var not in targets:
            raise error(f"{var} (environment): no such setting (known: "
                        f"{', '.join(sorted(targets))})")
        path = targets[var]
        owner = cls if len(path) == 1 else _hints(cls)[path[0]]
        table = data if len(path) == 1 else data.setdefault(path[0], {})
        if not isinstance(table, dict):
            raise doc.fault(path[0], "expected a table", error)
        table[path[-1]] = _env_value(text, _hints(owner)[path[-1]])
        from_env[".".join(path)] = var
    return dataclasses.replace(doc, data=data, from_env=from_env)


def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def _env_value(text: str, hint: Any) -> Any:
    """Text for string and path fields (paths against the current directory), else TOML."""
    kinds = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
    if Path in kinds:
        return Path(text).resolve() if text else text
    if str in kinds:
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # the type check then names the variable and the value


# -- lines ----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_INDEX = re.compile(r"\[(\d+)\]")


def _with_names(dotted: str, data: Any) -> str:
    """`point[1].address` -> `point[1] (b).address` when that item has a text `name`."""
    shown, node = "", data
    for part in _split(dotted):
        if part.isdigit() and isinstance(node, list) and int(part) < len(node):
            node = node[int(part)]
            name = node.get("name") if isinstance(node, dict) else None
            shown += f"[{part}]" + (f" ({name})" if isinstance(name, str) and name else "")
            continue
        node = node.get(part) if isinstance(node, dict) else None
        shown += f".{part}" if shown else part
    return shown


def line_of(text: str, dotted: str) -> int | None:
    """Best-effort 1-based line of a dotted field in TOML text, None when not found.

    tomllib reports no positions for values, so this scans the text: the table
    header that owns the field (array-of-tables headers counted, so `rule[2]`
    is the third `[[rule]]`), then the first line below it that assigns the
    innermost key found on the path; failing that, the header itself.
    """
    parts = _split(dotted)
    headers = _headers(text)
    best: tuple[int, int] | None = None  # (parts matched, line index)
    for index, path in headers:
        if len(path) <= len(parts) and parts[:len(path)] == path \
                and (best is None or len(path) >= best[0]):
            best = (len(path), index)
    lines = text.splitlines()
    start = best[1] if best else -1
    depth = best[0] if best else 0
    end = next((i for i, _ in headers if i > start), len(lines))
    for key in reversed([p for p in parts[depth:] if not p.isdigit()]):
        pattern = re.compile(rf"(^|[{{,.\s])\"?{re.escape(key)}\"?\s*=")
        for number in range(start + 1, end):
            if pattern.search(lines[number]):
                return number + 1
    return start + 1 if best else None


def _split(dotted: str) -> list[str]:
    return [p for p in _INDEX.sub(r".\1", dotted).split(".") if p]


def _headers(text: str) -> list[tuple[int, list[str]]]:
    """(line index, path) of every table header; array entries get their index."""
    counts: dict[str, int] = {}
    found: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines()):
        match = _HEADER.match(line)
        if not match:
            continue
        name = match.group(2).replace('"', "").replace(" ", "")
        path = name.split(".")
        if match.group(1) == "[[":
            counts[name] = counts.get(name, -1) + 1
            path = [*path, str(counts[name])]
        found.append((number, path))
    return found
