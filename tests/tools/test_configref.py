"""docs/configuration.md is generated from the config types and kept up to date."""

from __future__ import annotations

from pathlib import Path

from tandem.tools.configref import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_reference_page_matches_the_types() -> None:
    assert PAGE.read_text() == render(), \
        "docs/configuration.md drifted: python -m tandem.tools.configref > docs/configuration.md"


def test_the_page_shows_every_section_with_bounds_and_defaults() -> None:
    page = render()
    for heading in ("### [coap]", "### [[coap.grant]]", "### [[modbus.bus]]",
                    "### [[modbus.bus.units]]", "### [server]", "### [timeseries]"):
        assert heading in page
    assert "| `port` | integer | `5684` | >= 0, <= 65535 |" in page
    assert "| `unit_id` | integer | required | >= 1, <= 247 |" in page
