# What the node reports about itself in its exit and stats events: counts,
# heap, timing (window start lateness, sample jitter, longest link call).


def stats(node):
    s = {"sampled": node.seq, "reports": node.acked, "ignored": node.ignored,
         "peak_heap": node.peak_heap, "link_block_max_ms": node.link.slowest_ms,
         "window_us": node.timing.summary()}
    if hasattr(node, "late_max_ms"):  # fieldnode.FieldNode
        s["window_late_max_ms"] = node.late_max_ms
        s["spilled"] = getattr(node.outbox, "spilled", 0)
        spill = getattr(node.outbox, "spill", None)
        s["spill_pending"] = spill.count if spill is not None else 0
    j = getattr(node.sensors, "jitter", None)
    if j is not None:
        s["jitter_us"] = {"p50": j.quantile_us(500), "p99": j.quantile_us(990),
                          "max": j.max_us, "n": j.count}
        s["sensor_errors"] = node.sensors.errors
    if getattr(node, "jobs", None) is not None:
        node.jobs.stats(s)
    return s
