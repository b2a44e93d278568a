"""Status monitor, every hop real: a gateway process reports its status over the signed
gateway-request channel; the cloud process shows it in the API and on /metrics, and marks the
gateway unreachable once it stops reporting.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tandem.tools.site import Site, local_site
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = local_site(tmp_path_factory.mktemp("site"), window_s=1.0)
    try:
        running.start_cloud()
        yield running
    finally:
        running.stop_all()


def test_a_reporting_gateway_is_shown_and_a_silent_one_becomes_unreachable(site: Site) -> None:
    gateway = site.start_gateway(env={"TANDEM_GW_STATUS_INTERVAL_S": "0.5",
                                      "TANDEM_GW_STATUS_SCORE_ROUNDS": "2",
                                      "TANDEM_GW_STATUS_SITE": "plant-a"})
    path = f"/api/v1/gateways/{site.gateway_id}/status"
    with site.cloud_client() as cloud:
        eventually(lambda: cloud.get(path).status_code == 200, "the first status report", 60)
        first = cloud.get(path).json()
        assert first["reachable"] is True and first["interval_ms"] == 500
        assert first["resources"]["site"] == "plant-a"
        assert first["resources"]["cores"] >= 1 and first["resources"]["score"] > 0
        assert first["status"]["link_up"] is True and first["status"]["rtt_s"] > 0
        eventually(lambda: cloud.get(path).json()["received_ms"] > first["received_ms"],
                   "a second report", 30)
        scraped = cloud.get("/metrics").text
        assert f'tandem_cloud_gateway_reachable{{gateway="{site.gateway_id}"}} 1.0' in scraped
        assert [g["gateway"] for g in cloud.get("/api/v1/fleet/status").json()["gateways"]] == \
            [site.gateway_id]

        gateway.stop()
        site.forget(gateway)
        eventually(lambda: cloud.get(path).json()["reachable"] is False,
                   "unreachable after 3 missed intervals", 30)
        scraped = cloud.get("/metrics").text
        assert f'tandem_cloud_gateway_reachable{{gateway="{site.gateway_id}"}} 0.0' in scraped
