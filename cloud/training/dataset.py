"""Versioned training datasets: window features from stored summaries joined with operator labels.

A window is one device's summaries starting at the same t0: per channel its
mean, min, max and last value become features named "<channel>.<stat>". The
label of a window is the newest operator label overlapping it (fault -> 1,
normal or false alarm -> 0, none -> -1, unlabelled).

Split, so no window leaks between train and test: devices whose name hashes
into the test fraction are test-only for all time; every other device's
windows before `val_from_ms` train, those in [val_from_ms, test_from_ms)
validate, and those from test_from_ms on test. A window straddling a cut is
dropped rather than assigned. The file is an .npz whose `header` holds JSON
with the feature names and a sha256 over the arrays and the header.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tandem.cloud.labels.store import FALSE_ALARM, FAULT, NORMAL, Label, effective_for
from tandem.wire.batch import Summary

FORMAT = "tandem-dataset/1"
STATS = ("mean", "min", "max", "last")
TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}
TARGETS = {FAULT: 1, NORMAL: 0, FALSE_ALARM: 0}
UNLABELLED = -1
_ARRAYS = ("x", "y", "device", "t0", "t1", "split")


class DatasetError(ValueError):
    """A dataset that cannot be built or read (no windows, a tampered file, ...)."""


@dataclass(frozen=True, slots=True)
class SplitRule:
    """Where train ends and test begins, and which share of devices is held out entirely."""

    val_from_ms: int
    test_from_ms: int
    test_device_share: float = 0.25


@dataclass(frozen=True, slots=True)
class Dataset:
    """Window features, targets and split; `sha256` identifies the content."""

    features: tuple[str, ...]
    devices: tuple[str, ...]
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int8]
    device: npt.NDArray[np.int32]  # index into devices
    t0: npt.NDArray[np.int64]
    t1: npt.NDArray[np.int64]
    split: npt.NDArray[np.int8]
    rule: SplitRule
    dropped: int  # windows missing a channel or straddling a cut
    sha256: str

    def part(self, which: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
        """Features and targets of one split (TRAIN, VAL or TEST)."""
        mask = self.split == which
        return self.x[mask], self.y[mask]

    def counts(self) -> dict[str, dict[str, int]]:
        """Windows per split: total, fault, normal, unlabelled (for people and the card)."""
        out = {}
        for code, name in SPLIT_NAMES.items():
            y = self.y[self.split == code]
            out[name] = {"windows": int(y.size), "fault": int((y == 1).sum()),
                         "normal": int((y == 0).sum()), "unlabelled": int((y == -1).sum())}
        return out


def build(summaries: Iterable[Summary], labels: Sequence[Label], rule: SplitRule) -> Dataset:
    """Group summaries into windows, label and split them; DatasetError if none remain."""
    windows: dict[tuple[str, int], dict[str, Summary]] = defaultdict(dict)
    for s in summaries:
        windows[(s.device, s.t0_ms)][s.channel] = s
    channels = sorted({c for w in windows.values() for c in w})
    features = tuple(f"{c}.{stat}" for c in channels for stat in STATS)
    devices = tuple(sorted({d for d, _ in windows}))
    rows: list[tuple[list[float], int, int, int, int, int]] = []
    dropped = 0
    for (device, t0), by_channel in sorted(windows.items()):
        t1 = max(s.t1_ms for s in by_channel.values())
        which = assign(device, t0, t1, rule)
        if which is None or len(by_channel) != len(channels):
            dropped += 1
            continue
        values = [_stat(by_channel[c], stat) for c in channels for stat in STATS]
        judged = effective_for(labels, device, t0, t1)
        target = UNLABELLED if judged is None else TARGETS[judged]
        rows.append((values, target, devices.index(device), t0, t1, which))
    if not rows:
        raise DatasetError("no complete windows in the summaries given")
    return _assemble(features, devices, rows, rule, dropped)


def assign(device: str, t0: int, t1: int, rule: SplitRule) -> int | None:
    """The split a window belongs to, or None when it straddles a cut."""
    if held_out(device, rule.test_device_share):
        return TEST
    for cut in (rule.val_from_ms, rule.test_from_ms):
        if t0 < cut < t1:
            return None
    if t0 >= rule.test_from_ms:
        return TEST
    return VAL if t0 >= rule.val_from_ms else TRAIN


def held_out(device: str, share: float) -> bool:
    """True for the devices whose name hashes into the held-out share (stable across runs)."""
    digest = hashlib.sha256(device.encode()).digest()
    return int.from_bytes(digest[:4], "big") < share * 2**32


def save(dataset: Dataset, path: Path) -> None:
    """Write the dataset as .npz (arrays plus a JSON header with the content hash)."""
    header = json.dumps(_header(dataset) | {"sha256": dataset.sha256}, sort_keys=True)
    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(header.encode(), dtype=np.uint8),
             **{name: getattr(dataset, name) for name in _ARRAYS})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)


def load(path: Path) -> Dataset:
    """Read a dataset file; DatasetError if it is not one or its content hash does not match."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            arrays = {name: data[name] for name in _ARRAYS}
        if header.get("format") != FORMAT:
            raise DatasetError(f"{path}: not a {FORMAT} file")
        rule = SplitRule(**header["rule"])
        dataset = Dataset(tuple(header["features"]), tuple(header["devices"]),
                          rule=rule, dropped=int(header["dropped"]), sha256="", **arrays)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: unreadable dataset: {exc}") from exc
    digest = content_hash(dataset)
    if digest != header.get("sha256"):
        raise DatasetError(f"{path}: content hash {digest[:12]} does not match the header's "
                           f"{str(header.get('sha256'))[:12]}")
    return _with_hash(dataset, digest)


def content_hash(dataset: Dataset) -> str:
    """sha256 over the header (without the hash) and every array's dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(_header(dataset), sort_keys=True).encode())
    for name in _ARRAYS:
        array = np.ascontiguousarray(getattr(dataset, name))
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _header(dataset: Dataset) -> dict[str, Any]:
    rule = dataset.rule
    return {"format": FORMAT, "features": list(dataset.features),
            "devices": list(dataset.devices), "dropped": dataset.dropped,
            "rule": {"val_from_ms": rule.val_from_ms, "test_from_ms": rule.test_from_ms,
                     "test_device_share": rule.test_device_share}}


def _assemble(features: tuple[str, ...], devices: tuple[str, ...],
              rows: list[tuple[list[float], int, int, int, int, int]], rule: SplitRule,
              dropped: int) -> Dataset:
    dataset = Dataset(
        features, devices,
        x=np.array([r[0] for r in rows], dtype=np.float32),
        y=np.array([r[1] for r in rows], dtype=np.int8),
        device=np.array([r[2] for r in rows], dtype=np.int32),
        t0=np.array([r[3] for r in rows], dtype=np.int64),
        t1=np.array([r[4] for r in rows], dtype=np.int64),
        split=np.array([r[5] for r in rows], dtype=np.int8),
        rule=rule, dropped=dropped, sha256="")
    return _with_hash(dataset, content_hash(dataset))


def _with_hash(dataset: Dataset, digest: str) -> Dataset:
    fields = {name: getattr(dataset, name) for name in Dataset.__dataclass_fields__}
    return Dataset(**(fields | {"sha256": digest}))


def _stat(summary: Summary, stat: str) -> float:
    return float({"mean": summary.mean, "min": summary.minimum, "max": summary.maximum,
                  "last": summary.last}[stat])
