"""Inference stage: a LiteRT model scores window features; the score feeds the rules."""
