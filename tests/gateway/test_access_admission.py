"""The handshake admission policy alone, with an injected clock (access/admission.py)."""

from __future__ import annotations

from tandem.gateway.access.admission import AdmissionLimits, HandshakeAdmission, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admission(clock: Clock, **limits: float) -> HandshakeAdmission:
    return HandshakeAdmission(AdmissionLimits(**limits), clock)  # type: ignore[arg-type]


def start(policy: HandshakeAdmission, address: tuple[str, int]) -> Verdict:
    verdict = policy.decide(address)
    if verdict.refused is None:
        if verdict.evict is not None:
            policy.ended(verdict.evict, authenticated=False)
        policy.started(address)
    return verdict


def test_unknown_sources_share_a_rate_and_refill_with_time() -> None:
    clock = Clock()
    policy = admission(clock, new_source_rate=10, new_source_burst=3, max_handshakes=100)
    verdicts = [start(policy, (f"10.0.0.{n}", 5684)) for n in range(5)]
    assert [v.refused for v in verdicts] == [None, None, None, "handshake_rate_limited",
                                             "handshake_rate_limited"]
    clock.now += 0.1  # one token back
    assert start(policy, ("10.0.0.9", 1)).refused is None
    assert start(policy, ("10.0.0.10", 1)).refused == "handshake_rate_limited"


def test_one_unknown_source_holds_few_handshakes() -> None:
    policy = admission(Clock(), handshakes_per_source=2, new_source_burst=100)
    results = [start(policy, ("10.0.0.1", port)).refused for port in range(4)]
    assert results == [None, None, "handshake_source_limit", "handshake_source_limit"]
    policy.ended(("10.0.0.1", 0), authenticated=False)
    assert start(policy, ("10.0.0.1", 7)).refused is None


def test_a_known_source_evicts_the_oldest_unknown_half_open_handshake() -> None:
    clock = Clock()
    policy = admission(clock, max_handshakes=3, new_source_burst=100)
    start(policy, ("192.0.2.7", 1))
    policy.ended(("192.0.2.7", 1), authenticated=True)  # a node that once got in
    for n in range(3):
        assert start(policy, (f"10.0.0.{n}", 1)).refused is None
    assert start(policy, ("10.0.0.99", 1)).refused == "handshake_budget_full"
    verdict = start(policy, ("192.0.2.7", 2))
    assert verdict == Verdict(evict=("10.0.0.0", 1))
    assert policy.half_open == 3


def test_known_sources_are_forgotten_after_a_while_and_beyond_a_bound() -> None:
    clock = Clock()
    policy = admission(clock, known_for_s=60, known_sources=2)
    for n in range(3):
        policy.started((f"192.0.2.{n}", 1))
        policy.ended((f"192.0.2.{n}", 1), authenticated=True)
    assert not policy.is_known(("192.0.2.0", 1))  # least recently seen, over the bound
    assert policy.is_known(("192.0.2.2", 9))  # any port of a known IP
    clock.now += 61
    assert not policy.is_known(("192.0.2.2", 9))


def test_a_failed_handshake_does_not_make_a_source_known() -> None:
    policy = admission(Clock())
    start(policy, ("10.0.0.1", 1))
    policy.ended(("10.0.0.1", 1), authenticated=False)
    assert not policy.is_known(("10.0.0.1", 1))
    assert policy.half_open == 0
