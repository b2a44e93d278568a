"""What the cloud knows about its fleet: gateways, the devices they own, the batches applied.

Every device is owned by one gateway: the first to report it. Records of a
device owned by another gateway are refused (`claim_devices` names them), so
one gateway cannot overwrite another's data or attract its raw requests;
moving a device is an operator's explicit `move_device`.

The `ingested_batches` table is the idempotency ledger: its unique
(gateway, epoch, seq) makes each batch count once, however often it is sent,
and the payload digest tells a resend (same digest) from a different batch
under a number already used (a conflict). All times are Unix milliseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.cloud.db.upsert import insert_missing_statement, upsert_statement


class GatewayStatus(enum.StrEnum):
    """Whether a gateway's batches are accepted."""

    ACTIVE = "active"
    REVOKED = "revoked"
    # An admin re-admitted a revoked gateway: its old key stays refused, and its next
    # enrolment (installer token, new key) makes it active again.
    READMITTED = "readmitted"


class Gateway(Base):
    """A gateway allowed to upload, identified by its certificate's CN."""

    __tablename__ = "gateways"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    cert_pem: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(71))
    status: Mapped[str] = mapped_column(String(16), default=GatewayStatus.ACTIVE.value)
    created_ms: Mapped[int] = mapped_column(BigInteger)

    @property
    def active(self) -> bool:
        """True when the gateway may upload."""
        return self.status == GatewayStatus.ACTIVE.value


class Device(Base):
    """A device, the gateway that owns it, and when the cloud first and last heard of it."""

    __tablename__ = "devices"

    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(ForeignKey("gateways.name"), index=True)
    first_seen_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)


class IngestedBatch(Base):
    """One applied uplink batch: the ledger entry that makes replays harmless."""

    __tablename__ = "ingested_batches"
    __table_args__ = (UniqueConstraint("gateway", "epoch", "seq",
                                       name="uq_batch_gateway_epoch_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(ForeignKey("gateways.name"))
    seq: Mapped[int] = mapped_column(BigInteger)
    sent_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    record_count: Mapped[int] = mapped_column(Integer)
    # 0 for gateways that predate epochs; the digest is NULL on rows from before digests.
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


@dataclass(frozen=True, slots=True)
class BatchKey:
    """What identifies one uplink batch in the ledger, and the digest of its payload."""

    gateway: str
    epoch: int
    seq: int
    digest: str


class RegistryError(Exception):
    """A registry change that is refused (unknown name, conflicting certificate)."""


class AddOutcome(enum.StrEnum):
    """What `add_gateway` did."""

    ADDED = "added"
    UNCHANGED = "unchanged"
    REPLACED = "replaced"


def find_gateway(session: Session, name: str) -> Gateway | None:
    """The gateway called name, if registered."""
    return session.get(Gateway, name)


def list_gateways(session: Session) -> Sequence[Gateway]:
    """All gateways by name."""
    return session.scalars(select(Gateway).order_by(Gateway.name)).all()


def add_gateway(session: Session, name: str, cert_pem: str, public_key_pem: str,
                fingerprint: str, now_ms: int, replace: bool = False) -> AddOutcome:
    """Register a gateway; re-adding the same certificate is a no-op."""
    existing = session.get(Gateway, name)
    if existing is None:
        session.add(Gateway(name=name, cert_pem=cert_pem, public_key_pem=public_key_pem,
                            fingerprint=fingerprint, status=GatewayStatus.ACTIVE.value,
                            created_ms=now_ms))
        return AddOutcome.ADDED
    if existing.public_key_pem == public_key_pem and existing.active:
        return AddOutcome.UNCHANGED
    if not replace:
        # a different key, or a revoked one, must be a deliberate decision
        why = "is revoked" if not existing.active else "is registered with a different key"
        raise RegistryError(f"gateway {name!r} {why}; pass --replace to register this cert")
    existing.cert_pem, existing.public_key_pem = cert_pem, public_key_pem
    existing.fingerprint, existing.status = fingerprint, GatewayStatus.ACTIVE.value
    return AddOutcome.REPLACED


def revoke_gateway(session: Session, name: str) -> bool:
    """Stop accepting name's batches; False if it was already revoked."""
    gateway = session.get(Gateway, name)
    if gateway is None:
        raise RegistryError(f"no gateway called {name!r}")
    if not gateway.active:
        return False
    gateway.status = GatewayStatus.REVOKED.value
    return True


def readmit_gateway(session: Session, name: str) -> bool:
    """Let a revoked gateway enrol again with a new key; False if it was not revoked."""
    gateway = session.get(Gateway, name)
    if gateway is None:
        raise RegistryError(f"no gateway called {name!r}")
    if gateway.status != GatewayStatus.REVOKED.value:
        return False
    gateway.status = GatewayStatus.READMITTED.value
    return True


class BatchConflict(Exception):
    """The ledger holds this (gateway, epoch, seq) with another payload digest."""

    def __init__(self, key: BatchKey, next_seq: int) -> None:
        super().__init__(f"batch {key.gateway}/{key.epoch}/{key.seq} is in the ledger with "
                         f"other content; the first unused number is {next_seq}")
        self.key = key
        self.next_seq = next_seq


def batch_seen(session: Session, key: BatchKey) -> bool:
    """True when the key is in the ledger with the same digest; BatchConflict if another."""
    found = session.execute(select(IngestedBatch.digest).where(
        IngestedBatch.gateway == key.gateway, IngestedBatch.epoch == key.epoch,
        IngestedBatch.seq == key.seq)).first()
    if found is None:
        return False
    if found[0] is not None and found[0] != key.digest:
        raise BatchConflict(key, next_seq(session, key.gateway, key.epoch))
    return True


def next_seq(session: Session, gateway: str, epoch: int) -> int:
    """The first batch number of gateway's epoch that the ledger does not hold past."""
    highest = session.scalar(select(func.max(IngestedBatch.seq)).where(
        IngestedBatch.gateway == gateway, IngestedBatch.epoch == epoch))
    return int(highest or 0) + 1


def record_batch(session: Session, key: BatchKey, sent_ms: int, received_ms: int,
                 record_count: int) -> None:
    """Add the key to the ledger; a concurrent duplicate fails at flush."""
    session.add(IngestedBatch(gateway=key.gateway, epoch=key.epoch, seq=key.seq,
                              digest=key.digest, sent_ms=sent_ms, received_ms=received_ms,
                              record_count=record_count))
    session.flush()


def claim_devices(session: Session, gateway: str, devices: Iterable[str],
                  now_ms: int) -> list[str]:
    """Bind the devices nobody owns yet to gateway; return those another gateway owns."""
    names = sorted(set(devices))
    if not names:
        return []
    session.execute(insert_missing_statement(session.connection(), _table(Device), ("device",)),
                    _device_rows(gateway, names, now_ms))
    owners = session.execute(select(Device.device, Device.gateway)
                             .where(Device.device.in_(names))).all()
    return sorted(device for device, owner in owners if owner != gateway)


def owns_all(session: Session, gateway: str, devices: Iterable[str]) -> bool:
    """True when every device is already bound to gateway: a claim would change nothing."""
    names = set(devices)
    if not names:
        return True
    owned = session.scalar(select(func.count()).select_from(Device).where(
        Device.device.in_(sorted(names)), Device.gateway == gateway))
    return owned == len(names)


def touch_devices(session: Session, gateway: str, devices: Iterable[str], now_ms: int) -> None:
    """Note that gateway reported devices now: bind new ones, bump last_seen of its own."""
    names = sorted(set(devices))
    if not names:
        return
    table = _table(Device)
    stmt = upsert_statement(session.connection(), table, ("device",), ("last_seen_ms",),
                            where=table.c.gateway == gateway)
    session.execute(stmt, _device_rows(gateway, names, now_ms))


def owner_of(session: Session, device: str) -> str | None:
    """The gateway that owns device, if any reported it."""
    return session.scalar(select(Device.gateway).where(Device.device == device))


def move_device(session: Session, device: str, gateway: str) -> str:
    """Give device to gateway (an operator's decision); return the previous owner."""
    found = session.get(Device, device)
    if found is None:
        raise RegistryError(f"no device called {device!r}")
    target = session.get(Gateway, gateway)
    if target is None or not target.active:
        raise RegistryError(f"no active gateway called {gateway!r}")
    previous, found.gateway = found.gateway, gateway
    return previous


def _device_rows(gateway: str, names: list[str], now_ms: int) -> list[dict[str, object]]:
    return [{"device": d, "gateway": gateway, "first_seen_ms": now_ms, "last_seen_ms": now_ms}
            for d in names]


def list_devices(session: Session, gateway: str | None = None) -> Sequence[Device]:
    """Devices seen, optionally only those of one gateway."""
    query = select(Device).order_by(Device.device, Device.gateway)
    if gateway is not None:
        query = query.where(Device.gateway == gateway)
    return session.scalars(query).all()


def prune_ledger(session: Session, sent_before_ms: int) -> int:
    """Forget batches sent before sent_before_ms: safe once that is outside the replay window."""
    result = session.execute(_table(IngestedBatch).delete().where(
        IngestedBatch.sent_ms < sent_before_ms))
    return int(getattr(result, "rowcount", 0) or 0)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)
