"""Training datasets: stored summaries become labelled windows, split so nothing leaks.

A window is one device's summaries of one t0; its target is the newest
operator label overlapping it. Held-out devices are test-only for all time;
the others split by time, and a window straddling a cut belongs to no split.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tandem.cloud.cli.main import main
from tandem.cloud.training import dataset as datasets
from tandem.tools import simfleet
from tandem.wire.batch import Summary

WINDOW = simfleet.WINDOW_MS


def built(windows: int = 60, devices: int = 8, labels_from: int = 0,
          rule: datasets.SplitRule | None = None) -> tuple[simfleet.SimFleet, datasets.Dataset]:
    fleet = simfleet.fleet(devices, windows)
    rule = rule or datasets.SplitRule(fleet.t0(windows * 6 // 10), fleet.t0(windows * 8 // 10))
    labels = simfleet.labels(fleet, labels_from, windows)
    return fleet, datasets.build(simfleet.summaries(fleet), labels, rule)


def test_windows_carry_each_channels_statistics_and_the_ground_truth_label() -> None:
    fleet, data = built()
    assert data.features == ("temp.mean", "temp.min", "temp.max", "temp.last",
                             "vib.mean", "vib.min", "vib.max", "vib.last")
    for row in range(0, len(data.y), 7):
        device = fleet.devices[int(data.device[row])]
        window = (int(data.t0[row]) - fleet.start_ms) // WINDOW
        assert data.y[row] == int(fleet.faulty(device, window))
    first = {s.channel: s for s in simfleet.summaries(fleet)
             if s.device == data.devices[int(data.device[0])] and s.t0_ms == data.t0[0]}
    assert data.x[0].tolist() == pytest.approx(
        [getattr(first[c], stat) for c in ("temp", "vib")
         for stat in ("mean", "minimum", "maximum", "last")])


@pytest.mark.parametrize("cut_offset", [0, WINDOW // 2])
def test_no_window_leaks_between_train_validation_and_test(cut_offset: int) -> None:
    fleet = simfleet.fleet(12, 80)
    rule = datasets.SplitRule(fleet.t0(40) + cut_offset, fleet.t0(60) + cut_offset, 0.25)
    data = datasets.build(simfleet.summaries(fleet), [], rule)
    held = {i for i, name in enumerate(data.devices) if datasets.held_out(name, 0.25)}
    assert held and len(held) < len(data.devices)  # both kinds of device are present
    where = {code: data.split == code for code in datasets.SPLIT_NAMES}
    for device in held:  # a held-out device is only ever seen in test
        assert set(data.split[data.device == device]) == {datasets.TEST}
    trained_devices = set(data.device[where[datasets.TRAIN]])
    assert not trained_devices & held
    assert data.t1[where[datasets.TRAIN]].max() <= rule.val_from_ms
    others = where[datasets.TEST] & ~np.isin(data.device, list(held))
    assert data.t0[others].min() >= rule.test_from_ms
    assert data.t0[where[datasets.VAL]].min() >= rule.val_from_ms
    assert data.t1[where[datasets.VAL]].max() <= rule.test_from_ms
    straddling = 2 * (len(data.devices) - len(held)) if cut_offset else 0
    assert data.dropped == straddling


def test_the_content_hash_is_stable_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    _, first = built()
    _, again = built()
    _, relabelled = built(labels_from=30)
    assert first.sha256 == again.sha256 != relabelled.sha256
    path = tmp_path / "ds.npz"
    datasets.save(first, path)
    loaded = datasets.load(path)
    assert loaded.sha256 == first.sha256 and np.array_equal(loaded.x, first.x)
    with np.load(path) as raw:
        arrays = {name: raw[name] for name in raw.files}
    arrays["y"] = arrays["y"].copy()
    arrays["y"][0] = 1 - arrays["y"][0]
    np.savez(path, **arrays)
    with pytest.raises(datasets.DatasetError, match="content hash"):
        datasets.load(path)
    path.write_bytes(b"not a dataset")
    with pytest.raises(datasets.DatasetError, match="unreadable"):
        datasets.load(path)


def test_incomplete_windows_are_counted_not_guessed_and_nothing_at_all_is_an_error() -> None:
    rule = datasets.SplitRule(10 * WINDOW, 20 * WINDOW, 0.0)
    full = [Summary("d", c, t, t + WINDOW, 5, 1.0, 2.0, 1.5, 1.7)
            for t in range(0, 30 * WINDOW, WINDOW) for c in ("temp", "vib")]
    data = datasets.build(full[:-1], [], rule)  # the last window lacks vib
    assert (len(data.y), data.dropped) == (29, 1)
    assert set(data.y) == {datasets.UNLABELLED}
    with pytest.raises(datasets.DatasetError):
        datasets.build([], [], rule)


def test_the_cli_builds_a_dataset_from_ingested_summaries_and_api_labels(
        app: Flask, client: FlaskClient, pki: SimpleNamespace, kit: SimpleNamespace,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = (kit.now_ms() - 3 * 3600_000) // WINDOW * WINDOW
    fleet = simfleet.fleet(6, 40, start_ms=start)
    records = list(simfleet.summaries(fleet))
    for seq, first in enumerate(range(0, len(records), 100), start=1):
        body = kit.envelope(pki.gateway, seq, records[first:first + 100])
        assert kit.post(client, body).status_code == 200
    for label in simfleet.labels(fleet, 0, 40):
        answer = client.post("/api/v1/labels", json={
            "device": label.device, "label": label.label,
            "start_ms": label.start_ms, "end_ms": label.end_ms})
        assert answer.status_code == 201
    config = tmp_path / "cloud.toml"
    config.write_text(f'version = 1\nmode = "development"\ndata_dir = "{tmp_path / "data"}"\n'
                      f'[server]\ntrust_ca = "{pki.ca.cert_pem_path}"\n')
    out = tmp_path / "ds.npz"
    assert main(["dataset", "build", "--config", str(config), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    data = datasets.load(out)
    assert printed["sha256"] == data.sha256 and len(data.y) == 6 * 40 - data.dropped
    faults = sum(1 for d in fleet.devices for w in range(40) if fleet.faulty(d, w))
    assert int((data.y == 1).sum()) == faults
    assert set(printed["splits"]) == {"train", "val", "test"}
