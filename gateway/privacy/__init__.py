"""Desensitisation at the edge: what a policy does to records before they enter the outbox.

`transforms` are the pure per-value functions, `stage` applies a privacy
policy to records and counts what it did, `gate` is the outbox's admission
hook (hot-swappable stage, counts filed in the outbox's own transaction),
`keys` fetches the pseudonymisation key from the key store.
"""
