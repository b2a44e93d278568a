"""A privacy policy applied to records: what enters the outbox, and a count of what was done.

Counts are keyed (field, action): `field` is a channel, an event value name,
"device" for device ids, or "raw" for raw snippets; `action` is the policy's action, or "clear" for
a field sent unchanged. Each count says how many records it touched and how
many numbers (a summary has four statistics, an event value is one).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.privacy import transforms
from tandem.wire.batch import Event, Record, Sealed, Summary
from tandem.wire.policy import FieldRule, PrivacyPolicy
from tandem.wire.raw import RawSnippet
from tandem.wire.sealed import seal_event_values, seal_summary

DEVICE_FIELD = "device"
RAW_FIELD = "raw"  # raw snippets (wire.raw), sent only when the cloud asked for them
CLEAR = "clear"


class PrivacyConfigError(Exception):
    """A policy this gateway cannot carry out (no pseudonym key, no recipient key)."""


@dataclass
class Tally:
    """Records and values per (field, action) touched by one apply()."""

    records: Counter[tuple[str, str]] = field(default_factory=Counter)
    values: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, name: str, action: str, values: int) -> None:
        """One record's field handled by action."""
        self.records[(name, action)] += 1
        self.values[(name, action)] += values

    def rows(self) -> list[tuple[str, str, int, int]]:
        """(field, action, records, values), sorted."""
        return [(f, a, n, self.values[(f, a)]) for (f, a), n in sorted(self.records.items())]


class PrivacyStage:
    """Desensitises records by a PrivacyPolicy; pure apart from its RNG."""

    def __init__(self, policy: PrivacyPolicy, pseudonym_key: bytes | None = None,
                 recipient: ec.EllipticCurvePublicKey | None = None,
                 rng: np.random.Generator | None = None) -> None:
        if policy.device_ids == "pseudonymise" and not pseudonym_key:
            raise PrivacyConfigError("device_ids = pseudonymise needs a sealed pseudonym key")
        if recipient is None and any(r.action == "encrypt" for r in policy.rules):
            raise PrivacyConfigError("an encrypt rule needs the cloud's data key "
                                     "(from enrolment, or [policy] data_key)")
        self.policy = policy
        self._key = pseudonym_key if policy.device_ids == "pseudonymise" else None
        self._recipient = recipient
        self._rng = rng or transforms.new_rng()
        self._rules = {r.field: r for r in policy.rules}
        self._pseudonyms: dict[str, str] = {}

    def apply(self, records: Iterable[Record]) -> tuple[list[Record], Tally]:
        """The records to file in place of records, and what was done to them."""
        tally = Tally()
        out: list[Record] = []
        for record in records:
            if isinstance(record, Summary):
                out.extend(self._summary(record, tally))
            elif isinstance(record, Event):
                out.extend(self._event(record, tally))
            elif isinstance(record, RawSnippet):
                out.extend(self._raw(record, tally))
            else:
                out.append(record)  # already sealed: nothing more to hide
        return out, tally

    def _device(self, device: str, tally: Tally) -> str:
        if self._key is None:
            tally.add(DEVICE_FIELD, CLEAR, 1)
            return device
        tally.add(DEVICE_FIELD, "pseudonymise", 1)
        found = self._pseudonyms.get(device)
        if found is None:
            found = self._pseudonyms[device] = transforms.pseudonym(self._key, device)
        return found

    def _summary(self, summary: Summary, tally: Tally) -> Sequence[Record]:
        rule = self._rules.get(summary.channel)
        action = rule.action if rule else CLEAR
        tally.add(summary.channel, action, transforms.SUMMARY_STATISTICS)
        if rule is not None and rule.action == "drop":
            return ()
        device = self._device(summary.device, tally)
        renamed = Summary(device, summary.channel, summary.t0_ms, summary.t1_ms, summary.count,
                          summary.minimum, summary.maximum, summary.mean, summary.last)
        if rule is None:
            return (renamed,)
        if rule.action == "generalise":
            return (transforms.generalise_summary(renamed, rule),)
        if rule.action == "perturb":
            return (transforms.perturb_summary(renamed, rule, self._rng),)
        assert self._recipient is not None  # checked in __init__
        return (seal_summary(renamed, self._recipient),)

    def _event(self, event: Event, tally: Tally) -> Sequence[Record]:
        values: dict[str, float] = {}
        hidden: dict[str, float] = {}
        for name, value in event.values.items():
            rule = self._rules.get(name)
            tally.add(name, rule.action if rule else CLEAR, 1)
            if rule is None:
                values[name] = value
            elif rule.action == "encrypt":
                hidden[name] = value
            elif rule.action != "drop":
                values[name] = self._value(value, rule)
        device = self._device(event.device, tally)
        kept = Event(device, event.name, event.t_ms, event.severity, values)
        if not hidden:
            return (kept,)
        assert self._recipient is not None
        sealed: Sealed = seal_event_values(kept, hidden, self._recipient)
        return (kept, sealed)

    def _raw(self, snippet: RawSnippet, tally: Tally) -> Sequence[Record]:
        # A waveform cannot be generalised, perturbed or sealed field by field: any
        # rule on the field "raw" drops it (fail closed); device ids are as elsewhere.
        rule = self._rules.get(RAW_FIELD)
        tally.add(RAW_FIELD, "drop" if rule else CLEAR, 1)
        if rule is not None:
            return ()
        return (dataclasses.replace(snippet, device=self._device(snippet.device, tally)),)

    def _value(self, value: float, rule: FieldRule) -> float:
        if rule.action == "generalise":
            return transforms.generalise(value, rule)
        return transforms.perturb(value, rule, self._rng)
