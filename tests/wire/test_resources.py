"""The resource model: gateways, the cloud pool and tasks described in standard units."""

from __future__ import annotations

import math

import cbor2
import pytest

from tandem.wire import computescore
from tandem.wire.errors import WireError
from tandem.wire.resources import (
    CLOUD,
    Privacy,
    Resources,
    Status,
    TaskSpec,
    resources_from_plain,
    resources_to_plain,
    status_from_plain,
    status_to_plain,
    task_from_plain,
    task_to_plain,
)

GATEWAY = Resources("gw-1", "plant-a", 4, 1.5, 4 << 30, 20 << 30, ("tflite-xnnpack",),
                    2.5e6, 0.04)
CLOUD_POOL = Resources(CLOUD, "", 16, 3.0, 64 << 30, 1 << 40, (), math.inf, 0.0)
STATUS = Status("gw-1", 1_700_000_000_000, 0.7, 1 << 30, 3, 12.5, 2, 0, 0.04, 2.4e6, True)
TASK = TaskSpec("t-1", "spectral", 1_700_000_060_000, 4.0, "gw-1", "plant-a", 200_000,
                Privacy.SITE, True)


def test_every_description_survives_a_cbor_round_trip() -> None:
    for value, to_plain, from_plain in [
        (GATEWAY, resources_to_plain, resources_from_plain),
        (CLOUD_POOL, resources_to_plain, resources_from_plain),
        (STATUS, status_to_plain, status_from_plain),
        (TASK, task_to_plain, task_from_plain),
    ]:
        assert from_plain(cbor2.loads(cbor2.dumps(to_plain(value)))) == value  # type: ignore[operator]


def test_capacity_is_cores_times_score() -> None:
    assert GATEWAY.capacity == 6.0
    assert CLOUD_POOL.is_cloud and not GATEWAY.is_cloud


@pytest.mark.parametrize(("field", "value"), [
    ("privacy", "public"), ("migratable", 1), ("compute", -1.0), ("compute", float("nan")),
    ("input_bytes", 1.5), ("id", ""), ("deadline_ms", True),
])
def test_malformed_tasks_are_refused_with_the_reason(field: str, value: object) -> None:
    plain = task_to_plain(TASK)
    plain[field] = value
    with pytest.raises(WireError, match="resources"):
        task_from_plain(plain)


def test_a_site_private_task_cannot_claim_its_input_is_in_the_cloud() -> None:
    plain = task_to_plain(TASK) | {"input_place": CLOUD, "input_site": ""}
    with pytest.raises(WireError, match="site-private"):
        task_from_plain(plain)


def test_a_place_without_cores_or_bandwidth_is_refused() -> None:
    for field in ("cores", "bandwidth_bps", "score"):
        plain = resources_to_plain(GATEWAY) | {field: 0}
        with pytest.raises(WireError, match="positive"):
            resources_from_plain(plain)


def test_garbage_is_refused_not_crashed_on() -> None:
    for junk in (None, [], {"place": "x"}, {"link_up": "yes"}):
        for decode in (resources_from_plain, status_from_plain, task_from_plain):
            with pytest.raises(WireError):
                decode(junk)


def test_the_compute_score_is_reference_time_over_measured_time() -> None:
    ticks = iter(float(i) * 0.005 for i in range(100))  # every round takes 5 ms
    assert computescore.measure(rounds=3, clock=lambda: next(ticks)) == pytest.approx(2.0)
    assert computescore.measure(rounds=1) > 0
