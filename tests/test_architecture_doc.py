"""Specification of docs/architecture.md: its ownership table names every module.

A newcomer reads "Who owns what" to find where a thing lives; a module missing
from it is a module nobody is told about. Each source file of the programs
must be named there (as `name.py`, or through a glob such as `dtls*.py`), apart
from package `__init__.py` files and Alembic revision files (which
docs/migrations.md lists).
"""

from __future__ import annotations

import fnmatch
import re

from tests.nodeproc import REPO

PROGRAMS = ("wire", "gateway", "cloud", "tools", "firmware")


def _ownership_table() -> str:
    text = (REPO / "docs" / "architecture.md").read_text()
    return text[text.index("## Who owns what"):text.index("## Schemas and migrations")]


def _named(table: str) -> set[str]:
    """File names and globs (`dtls*.py`) in the table; a bare `*.py` would match anything."""
    return {name for name in re.findall(r"[\w*]+\.py", table) if name != "*.py"}


def _undocumented() -> list[str]:
    names = _named(_ownership_table())
    missing = []
    for program in PROGRAMS:
        for path in sorted((REPO / program).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if path.name == "__init__.py" or "/migrations/versions/" in relative:
                continue
            if not any(fnmatch.fnmatch(path.name, name) for name in names):
                missing.append(relative)
    return missing


def test_every_module_is_named_in_the_ownership_table() -> None:
    assert _undocumented() == []


def test_every_module_the_table_names_exists() -> None:
    sources = {path.name for program in PROGRAMS for path in (REPO / program).rglob("*.py")}
    sources |= {path.name for path in REPO.glob("*.py")}  # setup.py
    stale = {name for name in _named(_ownership_table())
             if "*" not in name and name not in sources}
    assert stale == set()
