"""Free loopback ports chosen at run time (never fixed numbers in tests)."""

from tandem.tools.site import free_tcp_port as free_port
from tandem.tools.site import free_udp_port

__all__ = ["free_port", "free_udp_port"]
