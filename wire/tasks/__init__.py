"""Tasks both the gateway and the cloud run: the spec, the computations and their registry."""
