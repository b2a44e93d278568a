"""Sealed records (fields encrypted at the edge, wire.sealed) as they arrived, for key holders."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cbor2
from sqlalchemy import BigInteger, Integer, LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.wire.batch import Sealed, decode_record, encode_record


class SealedRow(Base):
    """One sealed record; `body` is its wire map, so it can be opened later byte for byte."""

    __tablename__ = "sealed_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))
    of: Mapped[str] = mapped_column(String(1))
    name: Mapped[str] = mapped_column(String(64))
    t_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)


def write(session: Session, gateway: str, records: Iterable[object], received_ms: int) -> None:
    """Store the sealed ones among records (in the ingest transaction)."""
    session.add_all(SealedRow(gateway=gateway, device=r.device, of=r.of, name=r.name,
                              t_ms=r.t_ms, received_ms=received_ms,
                              body=cbor2.dumps(encode_record(r), canonical=True))
                    for r in records if isinstance(r, Sealed))


def read(session: Session, gateway: str | None = None, limit: int = 1000
         ) -> Sequence[tuple[str, Sealed]]:
    """(gateway, record) in arrival order."""
    query = select(SealedRow).order_by(SealedRow.id).limit(limit)
    if gateway is not None:
        query = query.where(SealedRow.gateway == gateway)
    out: list[tuple[str, Sealed]] = []
    for row in session.scalars(query):
        record = decode_record(cbor2.loads(row.body))
        assert isinstance(record, Sealed)
        out.append((row.gateway, record))
    return out
