"""Which strategy each site runs: `[scheduling]` in the TOML, overridden at run time by the API.

An override is a row of site_strategies (so every worker process sees it);
the effective strategy is the override, else `[scheduling] sites`, else
`[scheduling] strategy`. Changes are audited by the route that makes them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.config import SchedulingConfig
from tandem.cloud.db.base import Base
from tandem.wire.scheduling import Strategy


class SiteStrategy(Base):
    """A run-time override of one site's strategy."""

    __tablename__ = "site_strategies"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(32))
    changed_by: Mapped[str] = mapped_column(String(128))
    changed_ms: Mapped[int] = mapped_column(BigInteger)


def effective(session: Session, config: SchedulingConfig, site: str) -> tuple[Strategy, str]:
    """The strategy site runs now, and where it comes from ("api", "config", "default")."""
    row = session.get(SiteStrategy, site)
    if row is not None:
        return Strategy(row.strategy), "api"
    if site in config.sites:
        return Strategy(config.sites[site]), "config"
    return Strategy(config.strategy), "default"


def override(session: Session, site: str, strategy: Strategy, actor: str,
             now_ms: int) -> str | None:
    """Set site's strategy; returns the previous override (None when there was none)."""
    row = session.get(SiteStrategy, site)
    previous = None if row is None else row.strategy
    if row is None:
        row = SiteStrategy(site=site)
        session.add(row)
    row.strategy, row.changed_by, row.changed_ms = strategy.value, actor, now_ms
    return previous
