"""Simulated fleets and bursty task traces, reproducible from a seed.

Each gateway alternates calm and burst periods (a Markov-modulated Poisson
process: exponential period lengths, Poisson arrivals at the period's rate), so
surges hit a few gateways at a time, as a shift change or an alarm storm does.
The cloud adds light fleet-level tasks whose input is already in the cloud.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tandem.wire.resources import CLOUD, Privacy, Resources, TaskSpec


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """The fleet and its load; the same config and seed give the same trace."""

    gateways: int = 100
    per_site: int = 5
    seconds: float = 900.0
    seed: int = 1
    calm_rate: float = 0.01        # tasks/s per gateway between bursts
    burst_rate: float = 0.25       # tasks/s per gateway during a burst
    calm_mean_s: float = 300.0
    burst_mean_s: float = 30.0
    private_share: float = 0.2     # tasks whose input may not leave the site
    pinned_share: float = 0.1      # tasks that may not migrate once queued
    fleet_rate: float = 0.002      # light cloud-input tasks/s per gateway
    cloud_cores_per_gateway: float = 0.25
    cloud_score: float = 3.0
    surge: int = 0                 # extra tasks arriving at gateway 0 at t = 10 s


@dataclass(frozen=True, slots=True)
class Arrival:
    """A task entering the system at `t_s`; `work` is its true compute (the spec's is a guess)."""

    t_s: float
    task: TaskSpec
    work: float


def fleet(cfg: TraceConfig, rng: random.Random) -> list[Resources]:
    """The gateways (mixed sizes and links) and the cloud pool."""
    gws = [Resources(f"gw-{i:04d}", f"site-{i // cfg.per_site:03d}", rng.choice((1, 2, 4)),
                     rng.uniform(0.5, 1.5), 2 << 30, 16 << 30, (),
                     rng.uniform(0.25e6, 2.5e6), rng.uniform(0.02, 0.15))
           for i in range(cfg.gateways)]
    cores = max(2, round(cfg.gateways * cfg.cloud_cores_per_gateway))
    return [*gws, Resources(CLOUD, "", cores, cfg.cloud_score, 64 << 30, 1 << 40, (),
                            math.inf, 0.0)]


def arrivals(cfg: TraceConfig, places: list[Resources], rng: random.Random) -> list[Arrival]:
    """Every arrival of the run, in time order."""
    out: list[Arrival] = []
    for gw in places:
        if not gw.is_cloud:
            out += _gateway_trace(cfg, gw, rng)
    fleet_times = _poisson(rng, 0.0, cfg.seconds, cfg.fleet_rate * cfg.gateways)
    out += [_fleet_task(f"fleet-{n}", t, rng) for n, t in enumerate(fleet_times)]
    if cfg.surge and places and not places[0].is_cloud:
        out += [_edge_task(f"surge-{k}", 10.0, places[0], cfg, rng) for k in range(cfg.surge)]
    out.sort(key=lambda a: a.t_s)
    return out


def _gateway_trace(cfg: TraceConfig, gw: Resources, rng: random.Random) -> list[Arrival]:
    out: list[Arrival] = []
    t, burst = 0.0, rng.random() < cfg.burst_mean_s / (cfg.calm_mean_s + cfg.burst_mean_s)
    while t < cfg.seconds:
        length = rng.expovariate(1.0 / (cfg.burst_mean_s if burst else cfg.calm_mean_s))
        end = min(cfg.seconds, t + length)
        rate = cfg.burst_rate if burst else cfg.calm_rate
        out += [_edge_task(f"{gw.place}-{len(out) + i}", a, gw, cfg, rng)
                for i, a in enumerate(_poisson(rng, t, end, rate))]
        t, burst = end, not burst
    return out


def _poisson(rng: random.Random, start: float, end: float, rate: float) -> list[float]:
    times: list[float] = []
    t = start
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= end:
            break
        times.append(t)
    return times


def _edge_task(tid: str, t: float, gw: Resources, cfg: TraceConfig,
               rng: random.Random) -> Arrival:
    """A spectral batch (70 %) or a drift statistic (30 %) over this gateway's data."""
    spectral = rng.random() < 0.7
    compute = rng.uniform(1.0, 6.0) if spectral else rng.uniform(10.0, 30.0)
    nbytes = rng.randint(256_000, 1_000_000) if spectral else rng.randint(2_000_000, 8_000_000)
    deadline_s = 30.0 if spectral else 120.0
    spec = TaskSpec(tid, "spectral" if spectral else "drift", int((t + deadline_s) * 1000),
                    compute, gw.place, gw.site, nbytes,
                    Privacy.SITE if rng.random() < cfg.private_share else Privacy.ANY,
                    rng.random() >= cfg.pinned_share)
    return Arrival(t, spec, compute * rng.lognormvariate(0.0, 0.3))


def _fleet_task(tid: str, t: float, rng: random.Random) -> Arrival:
    """A light fleet-level task whose input (window summaries) is in the cloud."""
    compute = rng.uniform(0.5, 3.0)
    spec = TaskSpec(tid, "trend_map", int((t + 30.0) * 1000), compute, CLOUD, "", 50_000,
                    Privacy.ANY, True)
    return Arrival(t, spec, compute * rng.lognormvariate(0.0, 0.3))
