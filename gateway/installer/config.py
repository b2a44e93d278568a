"""The `[installer]` section: where the installer page listens and how long a login lasts."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from tandem.wire.tomlconfig import SECTION, Flag, Float, Int


@dataclass(frozen=True, config=SECTION)
class InstallerSection:
    """The installer page (HTTPS with the gateway's certificate); port 0 picks a free one.

    A session ends `session_s` after login; a client address that fails
    `free_attempts` logins waits 2^k seconds (up to `max_lockout_s`) per further failure.
    """

    enabled: Flag = True
    host: str = "0.0.0.0"
    port: Annotated[Int, Field(ge=0, le=65535)] = 8443
    session_s: Annotated[Float, Field(ge=60, le=7 * 86_400)] = 8 * 3600.0
    free_attempts: Annotated[Int, Field(ge=1, le=100)] = 3
    max_lockout_s: Annotated[Float, Field(ge=1, le=86_400)] = 300.0
