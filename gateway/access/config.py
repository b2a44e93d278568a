"""The `[coap]` section (the device-access endpoint) and the server's view of it.

`CoapSection` is what gateway.toml holds; `AccessConfig` is the same fields
plus what the endpoint takes from elsewhere (the identity's PEM files and the
revoked devices), so each setting is declared once.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from pydantic.dataclasses import dataclass

from tandem.gateway.access.admission import AdmissionLimits
from tandem.gateway.access.dtls import PeerLimits
from tandem.wire.tomlconfig import SECTION, FilePath, Flag, Float, Int


@dataclass(frozen=True, config=SECTION)
class DeviceGrant:
    """The CoAP paths one device may use (`[[coap.grant]]`); devices without a grant may use all."""

    device: Annotated[str, Field(min_length=1, max_length=64)]
    paths: tuple[str, ...] = ("/r",)


@dataclass(frozen=True, config=SECTION)
class CoapSection:
    """The CoAP/DTLS device-access endpoint."""

    host: str = "0.0.0.0"
    port: Annotated[Int, Field(ge=0, le=65535)] = 5684
    max_peers: Annotated[Int, Field(ge=1, le=100_000)] = 1024
    idle_timeout_s: Annotated[Float, Field(ge=0.01, le=86_400)] = 120.0
    # a node's handshake takes well under a second; a half-open one that lingers holds a slot
    handshake_timeout_s: Annotated[Float, Field(ge=0.01, le=3600)] = 10.0
    # half-open DTLS handshakes at once, and new ones per second from source IPs not yet
    # seen authenticated (gateway/access/admission.py)
    max_handshakes: Annotated[Int, Field(ge=1, le=100_000)] = 64
    new_source_rate: Annotated[Float, Field(gt=0, le=100_000)] = 50.0
    max_datagram: Annotated[Int, Field(ge=256, le=65507)] = 1200
    allowed_devices: tuple[str, ...] = ()  # empty: every device of the site CA
    insecure_plain_coap: Flag = False  # plain CoAP without DTLS, for tests and the demo only
    # device names, one a line; reloaded on change (unset: <data_dir>/revoked-devices.txt)
    revocation_file: FilePath | None = None
    grant: tuple[DeviceGrant, ...] = ()

    @property
    def limits(self) -> PeerLimits:
        """The peer-table bounds for the endpoint."""
        admission = AdmissionLimits(max_handshakes=min(self.max_handshakes, self.max_peers),
                                    new_source_rate=self.new_source_rate)
        return PeerLimits(self.max_peers, self.idle_timeout_s, self.handshake_timeout_s,
                          self.max_datagram, admission)

    @property
    def device_resources(self) -> dict[str, tuple[str, ...]]:
        """The grants as device -> CoAP paths."""
        return {g.device: g.paths for g in self.grant}


@dataclass(frozen=True, config=SECTION)
class AccessConfig(CoapSection):
    """Where and how the gateway serves devices; the PEM paths come from the site PKI."""

    cert_pem: Path | None = None
    key_pem: Path | None = None
    ca_pem: Path | None = None
    revoked_devices: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.insecure_plain_coap:
            missing = [n for n in ("cert_pem", "key_pem", "ca_pem") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"access: {', '.join(missing)} required for DTLS "
                                 "(plain CoAP needs insecure_plain_coap = true)")

    @classmethod
    def of(cls, coap: CoapSection, **extra: Any) -> AccessConfig:
        """The section's settings plus the PEM paths and revocations given as `extra`."""
        return cls(**{f.name: getattr(coap, f.name) for f in fields(CoapSection)}, **extra)
