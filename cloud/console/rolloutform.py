"""The console's "start a rollout" form: its fields with defaults, read into a RolloutPlan.

Only the form's own job is here (text to numbers, a comma list to canaries);
what a rollout may be is judged by cloud/models (rollout.Limits, rollout.start)
through routes.start_group_rollout, whose refusals name the field at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from werkzeug.datastructures import MultiDict

from tandem.cloud.models import rollout
from tandem.cloud.models.routes import RolloutPlan

LIMIT_NAMES = tuple(f.name for f in fields(rollout.Limits))
_DEFAULT_LIMITS = rollout.Limits()


@dataclass(slots=True)
class RolloutForm:
    """The form's values as typed (strings) and an error message per field at fault."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


def blank(group: str = "", version: str = "") -> RolloutForm:
    """A new form: one gateway per wave and rollout.Limits' defaults prefilled.

    `previous` (what a failed or aborted rollout falls back to) is empty: the
    version the group last completed, else the fleet-wide release.
    """
    values = {"group": group, "version": version, "previous": "", "canaries": "",
              "wave_size": "1"}
    values.update({name: str(getattr(_DEFAULT_LIMITS, name)) for name in LIMIT_NAMES})
    return RolloutForm(values)


def read(form: MultiDict[str, str]) -> tuple[RolloutForm, RolloutPlan | None]:
    """The form as sent, and its plan (None when a field could not be read)."""
    typed = blank()
    typed.values.update({name: form.get(name, "")[:200].strip() for name in typed.values})
    values, errors = typed.values, typed.errors
    for name in ("group", "version"):
        if not values[name]:
            errors[name] = "required"
    canaries = [c.strip() for c in values["canaries"].split(",") if c.strip()]
    wave = _number(values["wave_size"], int, "wave_size", errors)
    limits = {name: _number(values[name], type(getattr(_DEFAULT_LIMITS, name)), name, errors)
              for name in LIMIT_NAMES}
    if errors:
        return typed, None
    return typed, RolloutPlan(values["group"], values["version"], canaries, int(wave), limits,
                              previous=values["previous"] or None)


def _number(text: str, kind: type[int] | type[float], name: str,
            errors: dict[str, str]) -> int | float:
    """text as kind; a message in errors[name] (and 0) when it is not one."""
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value):
        return value
    errors[name] = "a whole number" if kind is int else "a number"
    return 0
