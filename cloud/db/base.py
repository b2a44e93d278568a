"""The declarative base every ORM model of the cloud derives from (one MetaData for all tables)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of the cloud's tables; `cloud/db/models.py` lists the modules using it."""
