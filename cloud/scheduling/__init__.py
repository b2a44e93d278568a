"""Edge-cloud scheduling in the cloud: gateway status, strategies per site, placement."""
