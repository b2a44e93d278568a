"""Engineer and operator tools: PKI, provisioning, flashing, benchmarks, demo."""
