"""tandem build, flash, provision, monitor: bundles, exact command lines, staged files."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import serial

from tandem.tools import build, monitor
from tandem.tools.boards import BoardError, load_board
from tandem.tools.cli import main
from tandem.tools.monitor import format_event, format_line
from tandem.tools.pki import Role, SiteCA
from tandem.tools.serialports import PortError, PortInfo, choose_port

pytestmark = pytest.mark.timeout(120)
ESP32 = load_board("esp32-devkitc")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> build.BuildResult:
    return build.build(ESP32, tmp_path_factory.mktemp("build"))


def test_every_module_compiles_and_the_manifest_lists_versions(bundle: build.BuildResult) -> None:
    m = bundle.manifest
    names = {f["path"] for f in m["files"]}
    sources = {p.stem for p in build.select_modules(ESP32)}
    assert {n[:-4] for n in names if n.endswith(".mpy")} == sources - {"main"}
    assert "main.py" in names and "board.json" in names
    assert not {"sim.mpy", "simbus.mpy", "board_host.mpy"} & names  # host-only left out
    assert m["version"] == build.firmware_version() and m["board"]["name"] == "esp32-devkitc"
    assert m["mpy_cross"]["mpy_abi"] == "6.3" and "mpy-cross" in m["mpy_cross"]["version"]
    for f in m["files"]:
        data = (bundle.directory / f["path"]).read_bytes()
        assert len(data) == f["size"]
        if f["path"].endswith(".mpy"):
            assert data[:2] == b"M\x06"  # .mpy header, version 6
    board = json.loads((bundle.directory / "board.json").read_text())
    assert board["pins"]["rs485_de"] == 4 and board["i2c"]["adxl345"] == 0x53
    with zipfile.ZipFile(bundle.archive) as z:
        assert sorted(z.namelist()) == sorted(f"{bundle.directory.name}/{n}"
                                              for n in [*names, "manifest.json"])
    print(f"\nbundle: {len(names)} files, {bundle.size} bytes, "
          f"zip {bundle.archive.stat().st_size} bytes")


def test_build_dry_run_prints_the_mpy_cross_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--board", "esp32-devkitc", "--out", "/o", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    out = f"/o/tandem-node-{build.firmware_version()}-esp32-devkitc"
    node = build.FIRMWARE / "node.py"
    assert f"mpy-cross -o {out}/node.mpy -s node.py {node}" in lines
    assert len(lines) == len(build.select_modules(ESP32)) - 1  # main.py stays source


def test_flash_dry_run_command_lines(bundle: build.BuildResult, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    node_dir = tmp_path / "node-07"
    node_dir.mkdir()
    for name in ("node.json", "cert.der", "key.der", "ca.der"):
        (node_dir / name).write_bytes(b"x")
    assert main(["flash", "--port", "/dev/ttyUSB0", "--image", "/fw/ESP32_GENERIC.bin",
                 "--bundle", str(bundle.directory), "--node-dir", str(node_dir),
                 "--dry-run"]) == 0
    files = " ".join(str(bundle.directory / f["path"]) for f in bundle.manifest["files"])
    assert capsys.readouterr().out.splitlines() == [
        "esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 erase-flash",
        "esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 write-flash -z 0x1000 "
        "/fw/ESP32_GENERIC.bin",
        f"mpremote connect /dev/ttyUSB0 fs cp {files} {bundle.directory}/manifest.json :",
        f"mpremote connect /dev/ttyUSB0 fs cp {node_dir}/node.json {node_dir}/cert.der "
        f"{node_dir}/key.der {node_dir}/ca.der :",
        "mpremote connect /dev/ttyUSB0 reset",
    ]


def test_flash_refuses_a_bundle_for_another_board(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    host = build.build(load_board("host-sim"), tmp_path)
    assert main(["flash", "--port", "/dev/ttyUSB0", "--no-image", "--bundle",
                 str(host.directory), "--dry-run"]) == 2
    assert "built for board 'host-sim'" in capsys.readouterr().err


def test_provision_dry_run_then_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SiteCA.create(tmp_path / "pki", "acme")
    args = ["provision", "node-07", "--pki", str(tmp_path / "pki"), "--staging",
            str(tmp_path / "st"), "--gateway-host", "10.0.0.2", "--port", "/dev/ttyACM0",
            "--push"]
    assert main([*args, "--dry-run"]) == 0
    d = tmp_path / "st" / "node-07"
    assert capsys.readouterr().out.splitlines() == [
        f"# issue device certificate node-07 from {tmp_path / 'pki'}",
        f"# write {d}/node.json", f"# write {d}/cert.der", f"# write {d}/key.der",
        f"# write {d}/ca.der",
        f"mpremote connect /dev/ttyACM0 fs cp {d}/node.json {d}/cert.der {d}/key.der "
        f"{d}/ca.der :",
    ]
    assert not d.exists()  # a dry run issues nothing
    assert main([a for a in args if a not in ("--push",)] + ["--wifi-ssid", "plant"]) == 0
    config = json.loads((d / "node.json").read_text())
    assert config["device_id"] == "node-07" and config["board"] == "esp32"
    assert config["gateway"] == {"host": "10.0.0.2", "port": 5684, "name": "gw-01"}
    assert config["board_options"]["wifi"]["ssid"] == "plant"
    assert os.stat(d / "key.der").st_mode & 0o077 == 0
    issued = SiteCA.load(tmp_path / "pki").directory / Role.DEVICE.value / "node-07"
    assert (d / "cert.der").read_bytes() == (issued / "cert.der").read_bytes()
    assert main([a for a in args if a != "--push"]) == 2  # issued already: refused


def test_port_selection() -> None:
    one = [PortInfo("/dev/ttyUSB0", "CP2102N", "USB VID:PID=10C4:EA60")]
    assert choose_port(None, one) == "/dev/ttyUSB0"
    assert choose_port("/dev/ttyS9", one) == "/dev/ttyS9"
    with pytest.raises(PortError, match="no serial port"):
        choose_port(None, [])
    with pytest.raises(PortError, match="several"):
        choose_port(None, [*one, PortInfo("/dev/ttyUSB1", "", "")])


def test_monitor_formats_events_and_reads_a_pty(capsys: pytest.CaptureFixture[str]) -> None:
    line = format_event({"ev": "ack", "seq": 5, "code": "2.04", "rtt_ms": 3,
                         "values": {"temp": 22.125, "vib": 0.0512345}})
    assert line == "  ack        seq=5 code=2.04 rtt_ms=3 temp=22.12 vib=0.05123"
    assert format_line(b'{"ev": "fatal", "error": "config"}\n')[0].startswith("!!fatal")
    assert format_line(b"Traceback (most recent call last):\r\n") == (
        "Traceback (most recent call last):", False)
    master, slave = os.openpty()
    name = os.ttyname(slave)
    try:
        assert main(["monitor", "--port", name, "--dry-run"]) == 0
        with serial.Serial(name, 115200, timeout=0.2) as port:
            os.write(master, b'{"ev": "boot", "device": "n1"}\nhello\n'
                     b'{"ev": "exit", "reports": 2}\n')
            assert monitor.run(port, "pty", count=2) == 2
    finally:
        os.close(master)
        os.close(slave)
    assert capsys.readouterr().out.splitlines() == [
        f"monitor {name} at 115200 baud, 8N1",
        "  boot       device=n1", "hello", "  exit       reports=2"]


@pytest.mark.parametrize(("text", "error"), [
    ('[pins]\nled = 2\nrelay = 2\n', r"b.toml:6: pins\.relay: GPIO2 is already pins\.led"),
    ('[pins]\nled = 2\n', r"b.toml:4: pins\.i2c_sda: required field missing"),
    ('sensor_model = "lidar"\n', r"b.toml:4: sensor_model: must be one of basic, accel"),
    ('[i2c]\nid = 0\nadxl345 = 0x99\n', r"b.toml:6: i2c\.adxl345: must be a 7-bit I2C"),
    ('colour = 1\n', r"b.toml:4: colour: unknown field"),
    ('[pins]\nled = 77\n', r"b.toml:5: pins\.led: expected less than or equal to 39"),
])
def test_board_files_are_checked_with_file_line_and_field(
        tmp_path: Path, text: str, error: str) -> None:
    bad = tmp_path / "b.toml"
    bad.write_text('version = 1\nname = "x"\nmcu = "esp32"\n' + text)
    with pytest.raises(BoardError, match=error):
        load_board(bad)


def test_the_shipped_boards_load_and_keep_only_the_keys_they_give() -> None:
    host = load_board("host-sim")
    assert host.sensor_model == "accel" and host.flash is None
    assert "ntp" not in host.runtime_json()  # defaults are the firmware's to apply
    assert ESP32.flash is not None and ESP32.flash.image_offset == 0x1000


def test_the_host_image_is_built_once_per_revision_and_old_ones_are_pruned(
        tmp_path: Path) -> None:
    for i in range(4):  # images of earlier revisions
        old = tmp_path / f"old{i}"
        old.mkdir()
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    main_py = build.host_image(tmp_path)
    image = main_py.parent
    names = {p.name for p in image.iterdir()}
    assert {"main.py", "startup.mpy", "board_host.mpy", "sim.mpy", "uart_host.mpy"} <= names
    assert not names & {"board_esp32.mpy", "uart_esp32.mpy", "node.py"}
    built_at = image.stat().st_mtime_ns
    assert build.host_image(tmp_path) == main_py and image.stat().st_mtime_ns == built_at
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([image.name, "old2", "old3"])
