"""The one configuration layer: bounds, one environment rule, faults as `file:line: field`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field
from pydantic.dataclasses import dataclass

from tandem.wire.tomlconfig import (
    SECTION,
    ConfigError,
    FieldError,
    FilePath,
    Flag,
    Int,
    line_of,
    load,
)


@dataclass(frozen=True, config=SECTION)
class Inner:
    """A section with a bound, a path and a cross-field rule."""

    port: Annotated[Int, Field(ge=1, le=9)] = 5
    file: FilePath | None = None
    on: Flag = False

    def __post_init__(self) -> None:
        if self.on and self.file is None:
            raise FieldError("file", "needed when on")


@dataclass(frozen=True, config=SECTION)
class Outer:
    """A document with one section and a list of them."""

    name: str
    inner: Inner = Inner()
    item: tuple[Inner, ...] = ()


TEXT = 'name = "x"\n[inner]\nport = 3\n\n[[item]]\nport = 1\n[[item]]\nport = 2\n'


def _file(tmp_path: Path, text: str = TEXT) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def test_a_file_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    config = load(Outer, _file(tmp_path, TEXT.replace("port = 3", 'file = "a/b"')))
    assert config.inner.file == tmp_path / "a" / "b"
    assert [i.port for i in config.item] == [1, 2]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("port = 3", "port = 10", "t.toml:3: inner.port: expected less than or equal to 9, got 10"),
    ("port = 3", "port = true", "t.toml:3: inner.port: expected a valid integer, got True"),
    ("port = 3", "prot = 3", "t.toml:3: inner.prot: unknown field"),
    ("port = 2", "port = 0", "t.toml:8: item[1].port: expected greater than or equal to 1"),
    ("port = 3", "on = true", "t.toml:2: inner.file: needed when on"),
    ('name = "x"\n', "", "t.toml: name: required field missing"),
])
def test_faults_name_file_line_and_field(tmp_path: Path, old: str, new: str,
                                         expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(Outer, _file(tmp_path, TEXT.replace(old, new, 1)))
    assert str(caught.value).startswith(str(tmp_path / expected)), str(caught.value)


def test_environment_overrides_by_one_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"T_INNER_PORT": "7", "T_NAME": "123", "T_INNER_FILE": "rel", "T_INNER_ON": "true",
           "OTHER_X": "ignored"}
    config = load(Outer, _file(tmp_path), "T_", env)
    assert (config.inner.port, config.name, config.inner.on) == (7, "123", True)
    assert config.inner.file == tmp_path / "rel"  # against the current directory


def test_a_bad_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^T_INNER_PORT \(environment\): inner.port: "):
        load(Outer, _file(tmp_path), "T_", {"T_INNER_PORT": "x"})
    with pytest.raises(ConfigError, match=r"^T_INNER_PROT \(environment\): no such setting"):
        load(Outer, _file(tmp_path), "T_", {"T_INNER_PROT": "1"})


def test_line_of_finds_keys_in_tables_arrays_and_inline_tables() -> None:
    text = 'a = 1\n[s]\nb = 2\n[[r]]\nc = 3\n[[r]]\nc = 4\nw = { d = 5 }\n'
    assert [line_of(text, f) for f in ("a", "s.b", "r[0].c", "r[1].c", "r[1].w.d", "s.x")] == \
        [1, 3, 5, 7, 8, 2]
