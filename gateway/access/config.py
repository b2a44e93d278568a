"""Settings of the device-access server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tandem.gateway.access.admission import AdmissionLimits
from tandem.gateway.access.dtls import PeerLimits


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """Where and how the gateway serves devices; the PEM paths come from the site PKI."""

    host: str = "0.0.0.0"
    port: int = 5684
    cert_pem: Path | None = None
    key_pem: Path | None = None
    ca_pem: Path | None = None
    max_peers: int = 1024
    idle_timeout_s: float = 120.0
    handshake_timeout_s: float = 10.0
    max_handshakes: int = 64
    new_source_rate: float = 50.0
    max_datagram: int = 1200
    allowed_devices: frozenset[str] | None = None
    revoked_devices: frozenset[str] = frozenset()
    device_resources: tuple[tuple[str, tuple[str, ...]], ...] = ()  # device -> CoAP paths
    insecure_plain_coap: bool = False

    def __post_init__(self) -> None:
        if not self.insecure_plain_coap:
            missing = [n for n in ("cert_pem", "key_pem", "ca_pem") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"access: {', '.join(missing)} required for DTLS "
                                 "(plain CoAP needs insecure_plain_coap = true)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"access: port {self.port} out of range")
        if self.max_peers < 1 or self.idle_timeout_s <= 0 or self.handshake_timeout_s <= 0:
            raise ValueError("access: max_peers and timeouts must be positive")
        if self.max_handshakes < 1 or self.new_source_rate <= 0:
            raise ValueError("access: max_handshakes and new_source_rate must be positive")
        if not 256 <= self.max_datagram <= 65507:
            raise ValueError(f"access: max_datagram {self.max_datagram} out of 256..65507")

    @property
    def limits(self) -> PeerLimits:
        """The peer-table bounds for the endpoint."""
        admission = AdmissionLimits(max_handshakes=min(self.max_handshakes, self.max_peers),
                                    new_source_rate=self.new_source_rate)
        return PeerLimits(self.max_peers, self.idle_timeout_s, self.handshake_timeout_s,
                          self.max_datagram, admission)
