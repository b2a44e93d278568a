"""Specification of rule evaluation: hysteresis, debounce, rate of change, combinations.

Time is driven by explicit report timestamps, never by the wall clock.
"""

from tandem.gateway.rules.definitions import AllOf, AnyOf, Input, Not, Rule, Threshold
from tandem.gateway.rules.engine import RuleEngine, Transition

TEMP = Input("temp")


def hot(level: float = 80.0, clear: float = 75.0) -> Threshold:
    return Threshold(TEMP, "above", level, clear)


class Driver:
    """Feeds one device's readings at given times; records transitions."""

    def __init__(self, *rules: Rule, device: str = "n1") -> None:
        self.engine = RuleEngine(rules)
        self.device = device
        self.seen: list[Transition] = []

    def at(self, t_ms: int, **values: float) -> list[str]:
        got = self.engine.evaluate(self.device, t_ms, values.keys(),
                                   lambda ref: values.get(ref.name))
        self.seen.extend(got)
        return [("fire " if tr.active else "clear ") + tr.rule.name for tr in got]


def test_hysteresis_fires_above_high_and_clears_only_below_low() -> None:
    d = Driver(Rule("overheat", hot()))
    assert d.at(0, temp=79.0) == []
    assert d.at(1, temp=80.0) == []            # not strictly above
    assert d.at(2, temp=80.5) == ["fire overheat"]
    assert d.at(3, temp=77.0) == []            # between low and high: stays on
    assert d.at(4, temp=81.0) == []            # already on: no second firing
    assert d.at(5, temp=75.0) == []            # not strictly below
    assert d.at(6, temp=74.9) == ["clear overheat"]
    assert d.at(7, temp=78.0) == []            # between: stays off


def test_a_low_alarm_uses_below_with_clear_above() -> None:
    d = Driver(Rule("low-pressure", Threshold(Input("p"), "below", 1.0, 1.2)))
    assert d.at(0, p=0.9) == ["fire low-pressure"]
    assert d.at(1, p=1.1) == []
    assert d.at(2, p=1.3) == ["clear low-pressure"]


def test_for_duration_fires_only_after_the_condition_held_long_enough() -> None:
    d = Driver(Rule("overheat", hot(), for_ms=2000, clear_ms=1000))
    assert d.at(0, temp=90.0) == []
    assert d.at(1500, temp=90.0) == []
    assert d.at(1999, temp=90.0) == []
    assert d.at(2000, temp=90.0) == ["fire overheat"]


def test_a_blip_shorter_than_for_ms_never_fires_and_restarts_the_count() -> None:
    d = Driver(Rule("overheat", hot(), for_ms=1000))
    assert d.at(0, temp=90.0) == []
    assert d.at(900, temp=70.0) == []           # dropped out: count restarts
    assert d.at(1000, temp=90.0) == []
    assert d.at(1900, temp=90.0) == []
    assert d.at(2000, temp=90.0) == ["fire overheat"]


def test_clearing_also_waits_for_clear_ms() -> None:
    d = Driver(Rule("overheat", hot(), clear_ms=3000))
    assert d.at(0, temp=90.0) == ["fire overheat"]
    assert d.at(10, temp=60.0) == []
    assert d.at(2000, temp=90.0) == []          # back on: the clear count restarts
    assert d.at(2010, temp=60.0) == []
    assert d.at(5009, temp=60.0) == []
    assert d.at(5010, temp=60.0) == ["clear overheat"]


def test_rate_of_change_per_second_over_a_window() -> None:
    rising = Threshold(TEMP, "above", 2.0, 1.0, rate_ms=10_000)
    d = Driver(Rule("heating-fast", rising))
    assert d.at(0, temp=20.0) == []
    assert d.at(5000, temp=25.0) == []          # 1 degree/s
    assert d.at(10_000, temp=45.0) == ["fire heating-fast"]   # 25 degrees in 10 s
    assert d.at(15_000, temp=50.0) == []        # 5..15 s: 2.5/s, still on
    assert d.at(25_000, temp=50.0) == ["clear heating-fast"]  # 15..25 s: flat


def test_boolean_combinations() -> None:
    both = AllOf((hot(), Threshold(Input("vib", "rms"), "above", 2.0, 2.0)))
    either = AnyOf((hot(), Threshold(Input("door"), "above", 0.5, 0.5)))
    cool = Not(hot())
    d = Driver(Rule("both", both), Rule("either", either), Rule("cool", cool))
    assert d.at(0, temp=70.0, door=0.0, **{"vib.rms": 1.0}) == ["fire cool"]
    assert d.at(1, temp=90.0, door=0.0, **{"vib.rms": 1.0}) == ["fire either", "clear cool"]
    assert d.at(2, temp=90.0, door=0.0, **{"vib.rms": 3.0}) == ["fire both"]
    assert d.at(3, temp=60.0, door=1.0, **{"vib.rms": 3.0}) == ["clear both", "fire cool"]


def test_a_missing_input_keeps_the_leaf_state() -> None:
    d = Driver(Rule("both", AllOf((hot(), Threshold(Input("vib"), "above", 1.0, 1.0)))))
    assert d.at(0, temp=90.0) == []
    assert d.at(1, vib=2.0) == ["fire both"]     # temp remembered as hot


def test_device_filter_and_separate_state_per_device() -> None:
    rules = (Rule("any-hot", hot()), Rule("n2-hot", hot(), device="n2"))
    engine = RuleEngine(rules)
    got = engine.evaluate("n1", 0, ["temp"], lambda ref: 90.0)
    assert [t.rule.name for t in got] == ["any-hot"]
    got = engine.evaluate("n2", 0, ["temp"], lambda ref: 90.0)
    assert [t.rule.name for t in got] == ["any-hot", "n2-hot"]
    assert engine.active("any-hot", "n1") and engine.active("any-hot", "n2")


def test_rules_are_only_evaluated_for_reports_carrying_their_channels() -> None:
    d = Driver(Rule("overheat", hot()))
    assert d.at(0, vib=1.0) == []
    assert d.engine.active("overheat", "n1") is False


def test_event_values_are_the_last_few_input_values_never_more() -> None:
    d = Driver(Rule("overheat", hot()))
    for t, value in enumerate([70.0, 72.0, 74.0, 76.0, 81.0]):
        d.at(t, temp=value)
    (fired,) = d.seen
    assert fired.values == {"temp": 81.0, "temp@-1": 76.0, "temp@-2": 74.0, "temp@-3": 72.0}


def test_reloading_keeps_the_state_of_unchanged_rules_only() -> None:
    a, b = Rule("a", hot()), Rule("b", hot())
    d = Driver(a, b)
    assert d.at(0, temp=90.0) == ["fire a", "fire b"]
    d.engine.replace([a, Rule("b", hot(level=95.0, clear=94.0))])
    assert d.engine.active("a", "n1") and not d.engine.active("b", "n1")
    assert d.at(1, temp=90.0) == []              # a stays fired without a second event


def test_state_is_bounded_with_lru_eviction() -> None:
    engine = RuleEngine([Rule("overheat", hot())], max_states=10)
    for device in range(50):
        engine.evaluate(f"n{device}", 0, ["temp"], lambda ref: 20.0)
    assert engine.evicted == 40
