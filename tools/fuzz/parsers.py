"""Long-running fuzz of the other parsers that face a network or a file, run by hand:

    python -m tools.fuzz_parsers --inputs 1000000

Targets, each fed byte-level mutants of valid documents (the mutator of
tools/fuzz/ingress.py): the uplink envelope and batch (`tandem.wire.cose.verify1`
then `tandem.wire.batch.decode_batch`, as the cloud's ingest runs them), the
gateway configuration (TOML text -> `tandem.gateway.config.parse_config`), the rules
file (`tandem.gateway.rules.loader.parse_rules_text`) and the Modbus register map
(`tandem.gateway.modbus.registers.parse_register_map`). Allowed outcomes: the
parser's own error type. Anything else is a finding, printed with its input.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.config import ConfigError, parse_config
from tandem.gateway.modbus.registers import parse_register_map
from tandem.gateway.rules.loader import parse_rules_text
from tandem.tools.fuzz.ingress import mutate
from tandem.wire.batch import Batch, Event, Summary, decode_batch, encode_batch
from tandem.wire.cose import SoftwareSigner, sign1, verify1
from tandem.wire.errors import WireError

REPO = Path(__file__).resolve().parents[2]  # tools/fuzz/parsers.py -> the repository
KEY = ec.generate_private_key(ec.SECP256R1())
Parser = Callable[[bytes], None]


def _envelope(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_batch(verify1(data, lambda kid: KEY.public_key()).payload)


def _toml(parse: Callable[[dict[str, object]], object], errors: tuple[type[Exception], ...]) \
        -> Parser:
    allowed: tuple[type[Exception], ...] = (tomllib.TOMLDecodeError, *errors)

    def target(data: bytes) -> None:
        with contextlib.suppress(*allowed):
            parse(tomllib.loads(data.decode("utf-8", "replace")))
    return target


def _rules(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        parse_rules_text(data.decode("utf-8", "replace"))


TARGETS: dict[str, Parser] = {
    "envelope": _envelope,
    "gateway-config": _toml(parse_config, (ConfigError,)),
    "rules": _rules,
    "register-map": _toml(parse_register_map, (ConfigError, ValueError)),
}


def seeds() -> dict[str, list[bytes]]:
    """Valid documents per target, to mutate."""
    summary = Summary("node-01", "temp", 1000, 2000, 3, 1.0, 3.0, 2.0, 2.5)
    event = Event("node-01", "hot", 1500, 3, {"temp": 81.5})
    batch = encode_batch(Batch("gw-01", 7, 5, (summary, event)))
    return {
        "envelope": [sign1(batch, "gw-01", SoftwareSigner(KEY))],
        "gateway-config": [(REPO / "tests" / "gateway" / "test_config.py").read_bytes()
                           .split(b'GOOD = """\\\n')[1].split(b'"""')[0]],
        "rules": [(REPO / "docs" / "rules.md").read_bytes().split(b"```toml\n")[2]
                  .split(b"```")[0]],
        "register-map": [(REPO / "hw" / "registers" / "sensor-node.toml").read_bytes()],
    }


def main(argv: list[str] | None = None) -> int:
    """Fuzz every target for --inputs each; print counts and findings."""
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz_parsers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    findings = 0
    for name, target in TARGETS.items():
        corpus = seeds()[name]
        rng = random.Random(args.seed)
        started = time.monotonic()
        for _ in range(args.inputs):
            data = mutate(rng.choice(corpus), rng, corpus)
            try:
                target(data)
            except Exception as exc:  # noqa: BLE001 - anything else is what we hunt for
                findings += 1
                print(f"FINDING {name}: {exc!r} input {data.hex()[:200]}", flush=True)
        elapsed = time.monotonic() - started
        print(f"{name}: {args.inputs:,} inputs in {elapsed:.0f} s", flush=True)
    print(f"done: findings {findings}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
