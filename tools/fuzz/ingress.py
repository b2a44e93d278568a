"""Long-running fuzz of the device ingress, run by hand (not in CI):

    python -m tools.fuzz_ingress --inputs 1000000            # mutation loop, any Python
    python -m tools.fuzz_ingress --atheris -- -runs=1000000  # coverage-guided (pip install atheris)

Each input goes through the three layers a datagram meets after DTLS:
aiocoap's `Message.decode`, `tandem.wire.report.decode_report` on its payload, and
the readings resource (`ReadingsResource.render_post`, with an authenticated
session and a sink that accepts). Allowed outcomes: UnparsableMessage from the
CoAP decoder (and ValueError: aiocoap 0.4.17 raises UnicodeDecodeError for a
string option that is not UTF-8, which gateway/access/coap_transport.py counts
as a decode error since this fuzzer found it; counted here as `known`), WireError
from the report decoder, and from the resource a reply with one of the
documented codes. Anything else is a finding: it is printed
with the input (hex) and saved under --findings, and the run continues.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cbor2
from aiocoap import CON, POST, error
from aiocoap.message import Message
from aiocoap.numbers.codes import Code

from tandem.gateway.access.coap_transport import SessionRemote
from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.access.readings import ReadingsResource
from tandem.gateway.access.stats import AccessStats
from tandem.gateway.reports import DeviceReport
from tandem.wire.errors import WireError
from tandem.wire.report import CONTENT_FORMAT_CBOR, Report, decode_report, encode_report

ALLOWED_CODES = {Code.CHANGED, Code.BAD_REQUEST, Code.FORBIDDEN, Code.UNAUTHORIZED,
                 Code.REQUEST_ENTITY_TOO_LARGE, Code.UNSUPPORTED_CONTENT_FORMAT,
                 Code.SERVICE_UNAVAILABLE}


class _Session:
    """An authenticated session that never sends (the resource only reads `device`)."""

    address = ("127.0.0.1", 5684)
    serial = 1
    device: str | None = "node-01"
    scheme = "coaps"
    is_open = True

    def send(self, data: bytes) -> bool:
        return True


class _Sink:
    async def submit(self, item: DeviceReport) -> bool:
        return True


@dataclass
class Findings:
    """Inputs that broke a rule, by signature (exception type and layer)."""

    directory: Path
    seen: dict[str, int]
    known: dict[str, int]

    def add(self, layer: str, exc: BaseException | str, data: bytes) -> None:
        """Record one finding (first input per signature is saved)."""
        signature = f"{layer}:{type(exc).__name__ if isinstance(exc, BaseException) else exc}"
        self.seen[signature] = self.seen.get(signature, 0) + 1
        if self.seen[signature] == 1:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256(data).hexdigest()[:16]
            (self.directory / f"{layer}-{name}.bin").write_bytes(data)
            print(f"FINDING {signature}: {exc!r} input {data.hex()[:200]}", flush=True)


class Target:
    """The three layers, run on one input."""

    def __init__(self, findings: Findings) -> None:
        self.findings = findings
        self.loop = asyncio.new_event_loop()
        self.resource = ReadingsResource(_Sink(), DevicePolicy(None, ()), AccessStats(1e9))
        self.remote = SessionRemote(_Session(), None, "127.0.0.1:5684")  # type: ignore[arg-type]

    def __call__(self, data: bytes) -> None:
        try:
            message = Message.decode(data, remote=self.remote)
        except error.UnparsableMessage:
            message = None
        except ValueError as exc:  # handled by SessionMessageInterface.session_data
            name = f"coap_decode:{type(exc).__name__}"
            self.findings.known[name] = self.findings.known.get(name, 0) + 1
            message = None
        except Exception as exc:  # noqa: BLE001 - the finding is the point
            self.findings.add("coap_decode", exc, data)
            message = None
        payload = message.payload if message is not None else data
        try:
            decode_report(payload)
        except WireError:
            pass
        except Exception as exc:  # noqa: BLE001
            self.findings.add("report_decode", exc, payload)
        if message is not None and message.code == POST:
            self._render(message, data)

    def _render(self, message: Message, data: bytes) -> None:
        try:
            reply = self.loop.run_until_complete(self.resource.render_post(message))
        except Exception as exc:  # noqa: BLE001
            self.findings.add("resource", exc, data)
            return
        if reply.code not in ALLOWED_CODES:
            self.findings.add("resource", f"code {reply.code}", data)


def seeds() -> list[bytes]:
    """A small corpus: good reports as CoAP POSTs, bare, and a few odd CBOR documents."""
    rng = random.Random(0)
    corpus: list[bytes] = []
    for seq in range(1, 6):
        values = {f"c{i}": rng.uniform(-1e6, 1e6) for i in range(rng.randint(1, 32))}
        report = encode_report(Report(seq, rng.getrandbits(32), 1_700_000_000_000, values))
        corpus.append(report)
        message = Message(code=POST, uri_path=("r",), payload=report)
        message.mtype, message.mid, message.token = CON, seq, bytes([seq])
        message.opt.content_format = CONTENT_FORMAT_CBOR
        corpus.append(bytes(message.encode()))
    corpus += [cbor2.dumps(x) for x in ({1: 1, 2: 2, 3: 3, 4: {"a": float("nan")}}, [1, [2, [3]]],
                                         {4: {"x" * 17: 1}}, 2**64, -(2**64), b"\0" * 40)]
    return corpus


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    """One to four byte-level mutations (flip, set, insert, delete, splice, truncate)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[min(at, len(out) - 1)] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x1B, 0xF9, 0xBF))
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:
            del out[at:at + rng.randint(1, 8)]
        elif op == 4:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            out[at:] = other[start:start + rng.randint(1, 64)]
        elif op == 5:
            del out[at:]
        else:
            out[at:at] = cbor2.dumps(rng.choice([rng.getrandbits(70), -rng.getrandbits(70),
                                                 rng.random(), "t" * rng.randint(0, 20), None]))
    return bytes(out[:1400])


def run_mutation_loop(target: Callable[[bytes], None], inputs: int, seed: int) -> int:
    """Feed `inputs` mutated inputs; returns how many ran."""
    rng = random.Random(seed)
    corpus = seeds()
    started = time.monotonic()
    for n in range(1, inputs + 1):
        data = mutate(rng.choice(corpus), rng, corpus) if rng.random() < 0.9 \
            else rng.randbytes(rng.randint(0, 64))
        target(data)
        if n % 50_000 == 0:
            rate = n / (time.monotonic() - started)
            print(f"{n:,} inputs, {rate:,.0f}/s", flush=True)
        if rng.random() < 0.001 and len(corpus) < 500:
            corpus.append(data)  # keep some mutants as new seeds
    return inputs


def run_atheris(target: Target, argv: list[str]) -> None:
    """Coverage-guided: atheris (libFuzzer) drives the target; pass libFuzzer flags in argv."""
    import atheris  # optional dependency

    count = 0

    def one(data: bytes) -> None:
        nonlocal count
        count += 1
        target(data)
        if count % 200_000 == 0:
            print(f"{count:,} inputs; findings {target.findings.seen or 'none'}; "
                  f"known {target.findings.known}", flush=True)

    corpus = Path(tempfile.mkdtemp(prefix="fuzz-ingress-corpus-"))
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.instrument_all()  # coverage of every loaded module: aiocoap, cbor2 glue, wire
    atheris.Setup([sys.argv[0], "-max_len=1400", *argv, str(corpus)], one)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz loop and print the input count and findings."""
    parser = argparse.ArgumentParser(description="fuzz the CoAP/CBOR ingress")
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    parser.add_argument("--atheris", action="store_true",
                        help="coverage-guided with atheris; options after -- go to libFuzzer")
    parser.add_argument("libfuzzer", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    findings = Findings(args.findings, {}, {})
    target = Target(findings)
    started = time.monotonic()
    if args.atheris:
        run_atheris(target, list(args.libfuzzer))
        return 0
    count = run_mutation_loop(target, args.inputs, args.seed)
    elapsed = time.monotonic() - started
    print(f"done: {count:,} inputs in {elapsed:.0f} s ({count / elapsed:,.0f}/s); "
          f"findings: {findings.seen or 'none'}; known, handled: {findings.known or 'none'}")
    return 1 if findings.seen else 0


if __name__ == "__main__":
    sys.exit(main())
