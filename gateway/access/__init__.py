"""Device access: CoAP over DTLS with X.509 device identities, feeding a ReportSink."""

from gateway.access.config import AccessConfig
from gateway.access.device_policy import DevicePolicy
from gateway.access.server import CoapDtlsServer
from gateway.access.stats import AccessStats

__all__ = ["AccessConfig", "AccessStats", "CoapDtlsServer", "DevicePolicy"]
