"""Discrete-event simulation (SimPy) of the decision engine over many gateways."""
