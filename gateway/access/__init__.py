"""Device access: CoAP over DTLS with X.509 device identities, feeding a ReportSink."""

from tandem.gateway.access.config import AccessConfig
from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.access.server import CoapDtlsServer
from tandem.gateway.access.stats import AccessStats

__all__ = ["AccessConfig", "AccessStats", "CoapDtlsServer", "DevicePolicy"]
