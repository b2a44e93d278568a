"""Edge-cloud offload, every hop real: three gateway processes of one site, the cloud and two
`tandem-cloud worker` processes on the SQLite queue. A surge of tasks at one gateway moves its
migratable tasks to the cloud and to idle peers; a site-private task stays on its site; a
gateway SIGKILLed mid-task has its task placed again and the result stored once; a fleet-wide
trend query mapped at the three gateways and reduced in the cloud equals the central answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from tandem.tools.site import local_site
from tandem.wire.clock import now_ms
from tandem.wire.resources import CLOUD, Privacy
from tandem.wire.tasks import registry, trend
from tests.e2e.offloadkit import MINUTE, Fleet, spec
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(600)
GATEWAYS = ("gw-a", "gw-b", "gw-c")
CLOUD_TOML = """
[tasks]
workers = 1
lease_s = 120
reap_interval_s = 1

[scheduling]
unreachable_after = 10
overload_wait_s = 4.0
idle_wait_s = 2.0
edge_lease_s = 5.0
light_compute = 1.0
cloud_workers = 2
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    site = local_site(tmp_path_factory.mktemp("offload"), window_s=1.0, gateway_id="gw-a",
                      cloud_extra=CLOUD_TOML)
    try:
        site.start_cloud()
        for n in range(2):
            site.start_worker(f"worker-{n}")
        running = Fleet(site, site.cloud_client(timeout=30))
        running.start_gateways(GATEWAYS)
        yield running
        running.cloud.close()
    finally:
        site.stop_all()


def test_a_surge_at_one_gateway_moves_migratable_tasks_to_the_cloud_and_idle_peers(
        fleet: Fleet) -> None:
    surge = [spec(f"surge-{i:02}", "burn", "gw-a") for i in range(40)]
    private = spec("private", "burn", "gw-a", privacy=Privacy.SITE)
    args = {"iterations": 100_000}
    for task in [*surge[:20], private, *surge[20:]]:
        assert fleet.submit(task, args)["placed"] == "gw-a"  # the input's gateway, at first
    finished = {t.id: fleet.done(t.id) for t in [*surge, private]}

    expected = registry.run("burn", args)
    assert all(t["result"] == expected for t in finished.values())
    moved = [t for t in finished.values() if t["moves"] > 0]
    assert any(t["placed"] == CLOUD for t in moved), moved
    assert any(t["placed"] in ("gw-b", "gw-c") for t in moved), moved
    assert finished["private"]["placed"] in GATEWAYS  # never the cloud, however loaded gw-a was


def test_a_fleet_wide_trend_mapped_at_the_gateways_equals_the_central_answer(
        fleet: Fleet) -> None:
    end = now_ms() // MINUTE * MINUTE
    held = {gateway: windows_of(gateway, end, seed) for seed, gateway in enumerate(GATEWAYS)}
    query = {"end_ms": end, "min_slope": 0.0}
    maps = [spec(f"map-{g}", "trend_map", g, privacy=Privacy.SITE, migratable=False,
                 compute=0.1) for g in GATEWAYS]
    for task in maps:
        fleet.submit(task, {**query, "windows": [list(w) for w in held[task.input_place]]})
    partials = []
    for task in maps:
        mapped = fleet.done(task.id)
        assert mapped["placed"] == task.input_place  # mapped where the windows are
        partials.append(mapped["result"]["partial"])
    reduce = spec("reduce", "trend_reduce", CLOUD, compute=0.1)
    assert fleet.submit(reduce, {**query, "partials": partials})["placed"] == CLOUD
    decomposed = fleet.done("reduce")["result"]["rising"]

    everything = [w for windows in held.values() for w in windows]
    central = trend.central(everything, trend.TrendQuery(end_ms=end))
    assert decomposed == central
    assert 0 < len(central) < len({w[0] for w in everything})  # some rise, some do not


def windows_of(gateway: str, end_ms: int, seed: int) -> list[trend.Window]:
    """30 days of daily vibration RMS for four devices, one of them shared with the next gateway
    (it moved mid-month), some rising and some falling, with noise."""
    rng = random.Random(seed)
    start = end_ms - trend.PERIOD_MS
    rows: list[trend.Window] = []
    devices = [f"{gateway}-pump-{k}" for k in range(3)] + ["roaming-fan"]
    for k, device in enumerate(devices):
        slope = (-1) ** k * 0.01 * (k + 1)
        days = range(seed * 10, seed * 10 + 10) if device == "roaming-fan" else range(30)
        for day in days:
            t = start + day * trend.DAY_MS + rng.randrange(trend.DAY_MS // 2)
            rows.append((device, t, 0.2 + slope * day + rng.gauss(0, 0.002)))
    return rows


def test_a_gateway_killed_mid_task_has_its_task_placed_again_and_stored_once(
        fleet: Fleet) -> None:
    task = spec("survivor", "burn", "gw-b", privacy=Privacy.SITE, migratable=False)
    args = {"iterations": 3_000_000}
    assert fleet.submit(task, args)["placed"] == "gw-b"
    eventually(lambda: fleet.task(task.id)["state"] == "running", "gw-b running the task", 120,
               poll_s=0.1)
    killed = fleet.gateways.pop("gw-b")
    killed.kill()
    fleet.site.gateways[0].forget(killed)

    finished = fleet.done(task.id)
    assert finished["placed"] in ("gw-a", "gw-c")  # its site, not the dead gateway
    assert finished["attempts"] >= 2  # claimed by gw-b, then by the gateway that finished it
    assert finished["result"] == registry.run("burn", args)
