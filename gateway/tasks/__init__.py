"""Task execution on the gateway: a bounded pool of low-priority worker processes."""
