"""Tandem edge gateway: device access -> pipeline -> rules/inference -> outbox -> uplink."""
