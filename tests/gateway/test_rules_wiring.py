"""Specification of the local control loop's wiring from the gateway config."""

import asyncio
import os
from pathlib import Path

import pytest

from tandem.gateway.config import load_config
from tandem.gateway.inference.model import interpreter_class
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.rules.loader import RulesError
from tandem.gateway.rules.local_control import LocalControl
from tandem.wire.batch import Record
from tests.waiting import until

FIXTURE = Path(__file__).parent.parent / "fixtures" / "anomaly16.tflite"

GATEWAY = """\
version = 1
[gateway]
id = "gw-01"
[identity]
cert = "c.pem"
key = "k.pem"
ca = "ca.pem"
"""

RULES = """\
version = 1
[[rule]]
name = "overheat"
when = { input = "temp", above = 80.0 }
"""


class _Store:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def put(self, records: list[Record], priority: object) -> None:
        self.records.extend(records)



def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_nothing_is_built_without_rules_or_model(tmp_path: Path) -> None:
    (tmp_path / "gw.toml").write_text(GATEWAY)
    config = load_config(tmp_path / "gw.toml", environ={})
    assert LocalControl.from_config(config, _Store(), GatewayMetrics()) is None


def test_a_bad_rules_file_stops_the_gateway_from_starting(tmp_path: Path) -> None:
    (tmp_path / "gw.toml").write_text(GATEWAY + '[rules]\nfile = "rules.toml"\n')
    (tmp_path / "rules.toml").write_text(RULES.replace("80.0", '"hot"'))
    config = load_config(tmp_path / "gw.toml", environ={})
    with pytest.raises(RulesError, match=r"rules.toml:4: rule\[0\].when.above"):
        LocalControl.from_config(config, _Store(), GatewayMetrics())


def test_rules_and_model_are_loaded_watched_and_reloaded(tmp_path: Path) -> None:
    (tmp_path / "gw.toml").write_text(
        GATEWAY + '[rules]\nfile = "rules.toml"\npoll_s = 0.05\n'
        f'[inference]\nmodel = "{FIXTURE}"\nchannel = "vib"\npoll_s = 0.05\n')
    _write(tmp_path / "rules.toml", RULES)
    config = load_config(tmp_path / "gw.toml", environ={})
    assert config.rules.file == tmp_path / "rules.toml"
    assert config.inference.model == FIXTURE

    async def scenario() -> None:
        metrics = GatewayMetrics()
        local = LocalControl.from_config(config, _Store(), metrics)
        assert local is not None
        stop = asyncio.Event()
        tasks = [asyncio.create_task(make(), name=name) for name, make in local.tasks(stop)]
        assert sorted(t.get_name() for t in tasks) == ["model-watch", "rules-reload"]
        if interpreter_class() is not None:
            await until(lambda: local.model.model is not None, "the model to load")
            version = local.model.model.version if local.model.model else ""
            assert metrics.registry.get_sample_value("tandem_gw_model_info",
                                                     {"version": version}) == 1.0
        _write(tmp_path / "rules.toml", RULES.replace("overheat", "too-hot"))
        await until(lambda: [r.name for r in local.reflex.engine.rules] == ["too-hot"],
                    "the reloaded rule too-hot")
        assert metrics.registry.get_sample_value("tandem_gw_rules_reloads_total",
                                                 {"result": "ok"}) == 1.0
        stop.set()
        await asyncio.gather(*tasks)
        await local.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(scenario())
