"""Rules on the installer page: the loader's errors at their line, a dry run, an atomic apply."""

from __future__ import annotations

from pathlib import Path

from tandem.gateway.installer.rulesedit import check, dry_run, write_atomically
from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.reports import DeviceReport
from tandem.wire.report import Report

HOT = """\
version = 1

[[rule]]
name = "hot"
when = { input = "temp", above = 30.0, clear_below = 25.0 }
for_ms = 1000
"""


def test_an_error_names_the_file_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    verdict = check(HOT.replace("above = 30.0", 'above = "hot"'), path)
    assert verdict.ruleset is None
    assert verdict.error.startswith(f"{path}:5: rule[0].when.above:"), verdict.error
    assert verdict.line == 5
    assert check(HOT, path).ruleset is not None


def test_dry_run_replays_kept_readings_with_debounce() -> None:
    live = LiveValues(clock_ms=lambda: 100_000)
    temps = [20, 31, 32, 33, 20, 20]  # above 30 for 2 s (for_ms = 1000), then below 25
    for seq, temp in enumerate(temps):
        live.take(DeviceReport("n1", Report(seq, 7, 1_000 * (seq + 1), {"temp": temp}), 0))
    live.take(DeviceReport("n2", Report(0, 1, 1_500, {"temp": 10.0}), 0))
    ruleset = check(HOT, Path("rules.toml")).ruleset
    assert ruleset is not None
    firings = dry_run(ruleset, live.recent(0))
    assert [(f.rule, f.device, f.t_ms, f.active) for f in firings] == \
        [("hot", "n1", 3_000, True), ("hot", "n1", 5_000, False)]


def test_live_values_count_sequence_gaps_and_stay_bounded() -> None:
    live = LiveValues(max_points=3, max_nodes=2)
    for seq in (0, 1, 4, 5):  # 2 and 3 lost
        live.take(DeviceReport("n1", Report(seq, 7, 1_000 + seq, {"v": 1.0}), 0))
    assert live.nodes["n1"].gaps == 2 and len(live.nodes["n1"].history) == 3
    live.take(DeviceReport("n1", Report(0, 8, 2_000, {"v": 1.0}), 0))  # a reboot is no gap
    assert live.nodes["n1"].gaps == 2
    for name in ("n2", "n3"):
        live.take(DeviceReport(name, Report(0, 1, 1_000, {"v": 1.0}), 0))
    assert list(live.nodes) == ["n2", "n3"]


def test_apply_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("version = 1\n")
    path.chmod(0o640)
    write_atomically(path, HOT)
    assert path.read_text() == HOT
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["rules.toml"]
