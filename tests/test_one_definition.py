"""Specification of the consolidations: each shared fact is written once, by its owner.

The millisecond clock is tandem.wire.clock.now_ms; the gateway's database file
name is gateway.store.database.DATABASE_FILE and the cloud's is
cloud.db.DATABASE_FILE; a cloud CLI command opens the database through
cloud.db.engine.cli_engine / cli_session. A second copy creeping back in is
what these tests refuse.
"""

from __future__ import annotations

import re
import time

import pytest

from tandem.wire.clock import now_ms
from tests.nodeproc import REPO

PROGRAMS = ("wire", "gateway", "cloud", "tools")


def _sources() -> dict[str, str]:
    return {str(path.relative_to(REPO)): path.read_text()
            for program in PROGRAMS for path in sorted((REPO / program).rglob("*.py"))}


def _writers(pattern: str) -> set[str]:
    return {name for name, text in _sources().items() if re.search(pattern, text)}


def test_now_ms_is_unix_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    stamp = now_ms()
    assert before <= stamp <= time.time_ns() // 1_000_000


@pytest.mark.parametrize("pattern", [
    r"time_ns\(\)\s*//\s*1_?000_?000\b",
    r"time\.time\(\)\s*\*\s*1_?000\b",
    r"def _?now_ms\(",
])
def test_the_millisecond_clock_is_written_once(pattern: str) -> None:
    assert _writers(pattern) <= {"wire/clock.py"}


def test_the_gateway_database_file_is_named_by_its_store_only() -> None:
    assert _writers(r"gateway\.sqlite3") == {"gateway/store/database.py"}


def test_the_cloud_database_file_is_named_by_its_store_only() -> None:
    # cloud/config.py's default URL still spells it: the config layer is being rewritten on
    # another branch; it should read tandem.cloud.db.DATABASE_FILE (no import cycle there).
    assert _writers(r"cloud\.db['\"]") <= {"cloud/db/__init__.py", "cloud/config.py"}


def test_cloud_cli_commands_open_the_database_one_way() -> None:
    # `tandem-cloud db` manages the schema itself (upgrade to a chosen revision)
    cli = {name: text for name, text in _sources().items()
           if name.startswith("cloud/cli/") and name != "cloud/cli/db.py"}
    assert not [name for name, text in cli.items()
                if re.search(r"database\.connect\(|Session\(engine|create_schema\(", text)]


def test_test_modules_share_helpers_through_helper_modules_not_each_other() -> None:
    # A helper imported from a test module runs that module's fixtures and tests'
    # imports in the importer; shared pieces live in tests/**/<helper>.py instead.
    importers = {str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("test_*.py")
                 if re.search(r"^from tests\.(\w+\.)*test_\w+ import", path.read_text(), re.M)}
    assert importers == set()
