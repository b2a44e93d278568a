"""Uplink endpoint: POST /ingest/v1/batches takes one COSE_Sign1-signed batch from a gateway.

Each batch is applied at most once: the ledger entry, the points and the
device sightings commit in one transaction, and a (gateway, epoch, seq)
already in the ledger with the same payload digest is answered "duplicate"
without touching anything; with another digest it is a conflict (409, loud:
a WARNING, a metric, an audit entry), never a silent duplicate. A store outside
the SQL database (InfluxDB) cannot join that transaction: its points are
written first, the ledger commits after, and a failure in between is repaired
by the gateway's resend (writes are idempotent, so it has no second effect).
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from tandem.cloud.access.auth import public
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import RecordsRefused, Rejection, error_response
from tandem.cloud.fleet import registry
from tandem.cloud.fleet.gateway_requests import registered_key
from tandem.cloud.ingest import plausible
from tandem.cloud.ingest import sealed as sealed_store
from tandem.cloud.metrics import metrics
from tandem.cloud.raw import store as raw_store
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timestamps import now_ms
from tandem.wire.batch import Batch, decode_batch
from tandem.wire.cose import MEDIA_TYPE, verify1
from tandem.wire.errors import WireError

log = logging.getLogger(__name__)
bp = Blueprint("ingest", __name__, url_prefix="/ingest/v1")

# How each wire fault is answered: (HTTP status, error code).
WIRE_FAULTS: dict[str, tuple[int, str]] = {
    "cbor": (400, "malformed"),
    "cose": (400, "malformed"),
    "schema": (422, "invalid_batch"),
    "too_large": (413, "too_large"),
    "unknown_key": (403, "unknown_gateway"),
    "signature": (401, "bad_signature"),
}
# Every other way a batch is refused (besides the wire faults above).
OTHER_REJECTIONS = ("unsupported_media_type", "revoked_gateway", "gateway_mismatch",
                    "stale_batch", "future_batch", "foreign_device", "batch_conflict")
# Refusals the audit log records: forged, foreign, revoked or replayed batches (not mere
# malformed bytes, which say nothing about who sent them).
AUDITED_REJECTIONS = frozenset({"bad_signature", "unknown_gateway", "revoked_gateway",
                                "gateway_mismatch", "stale_batch", "future_batch",
                                "foreign_device", "batch_conflict"})


class ConflictRejection(Rejection):
    """409: the batch's number is taken by other content; says where the gateway may resume."""

    def __init__(self, conflict: registry.BatchConflict) -> None:
        super().__init__(409, "batch_conflict", str(conflict))
        self.next_seq = conflict.next_seq


@bp.record_once
def _prime_metrics(state: BlueprintSetupState) -> None:
    # Export every reason at 0, so a rate() over a first rejection is not lost.
    rejected = metrics(state.app).batches_rejected
    for code in {c for _, c in WIRE_FAULTS.values()} | set(OTHER_REJECTIONS):
        rejected.labels(code)
    for outcome in ("stored", "duplicate"):
        metrics(state.app).batches_accepted.labels(outcome)


@bp.post("/batches")
@public("each batch is authenticated by its COSE signature", csrf=False)
def post_batch() -> tuple[Response, int]:
    """Verify, decode and store one batch; answer what happened."""
    started = time.perf_counter()
    try:
        body, status = _handle()
    except Rejection as exc:
        metrics().batches_rejected.labels(exc.code).inc()
        log.warning("batch rejected from %s: %s (%s)", request.remote_addr, exc.code, exc.detail)
        _audit_refusal(exc)
        body, status = error_response(exc.status, exc.code, exc.detail)
        if isinstance(exc, ConflictRejection):
            body = jsonify(error=exc.code, detail=exc.detail, next_seq=exc.next_seq)
    metrics().ingest_seconds.observe(time.perf_counter() - started)
    return body, status


def _audit_refusal(exc: Rejection) -> None:
    # Aggregated per source and reason: a replayed or forged batch proves nothing about its
    # sender, so each one must not cost an audit row (audit/refusals.py).
    if exc.code not in AUDITED_REJECTIONS:
        return
    try:
        audit.refused(audit.INGEST_REFUSED, {"reason": exc.code, "detail": exc.detail},
                      kind=f"{audit.INGEST_REFUSED}/{exc.code}")
    except SQLAlchemyError as failure:  # the refusal stands; the database is failing anyway
        log.error("cannot audit a refused batch: %s", failure)


def _handle() -> tuple[Response, int]:
    _check_media_type()
    batch, key = _admit(_read_body())
    try:
        stored = _store(batch, key, now_ms())
    except RecordsRefused as exc:
        raise Rejection(422, "invalid_batch", str(exc)) from None
    except registry.BatchConflict as exc:
        raise ConflictRejection(exc) from None
    outcome = "stored" if stored else "duplicate"
    metrics().batches_accepted.labels(outcome).inc()
    if stored:
        metrics().records_ingested.inc(len(batch.records))
    log.info("batch %s/%d/%d %s (%d records)", batch.gateway, batch.epoch, batch.seq, outcome,
             len(batch.records))
    body: dict[str, Any] = {"status": outcome, "gateway": batch.gateway, "seq": batch.seq}
    if stored:
        body["records"] = len(batch.records)
    return jsonify(body), 200


def _check_media_type() -> None:
    cose_type = request.mimetype_params.get("cose-type", "cose-sign1")
    if request.mimetype != "application/cose" or cose_type != "cose-sign1":
        raise Rejection(415, "unsupported_media_type",
                        f"send {MEDIA_TYPE}, not {request.content_type or 'no content type'!r}")


def _read_body() -> bytes:
    """The request body, refused with 413 beyond max_batch_bytes however it is framed."""
    limit = _config().ingest.max_batch_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Rejection(413, "too_large", f"{request.content_length} bytes > {limit}")
    # A body without Content-Length (chunked) is cut at max_content_length without an
    # error, so allow one byte more than the limit and treat reaching it as too large.
    request.max_content_length = limit + 1
    try:
        body: bytes | None = request.get_data(cache=False)
    except RequestEntityTooLarge:
        body = None
    if body is None or len(body) > limit:
        raise Rejection(413, "too_large", f"body over {limit} bytes")
    return _decoded(body, limit)


def _decoded(body: bytes, limit: int) -> bytes:
    """Undo Content-Encoding gzip, bounded: a small bomb must not inflate past the limit."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise Rejection(415, "unsupported_media_type", f"Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(wbits=31)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Rejection(400, "malformed", f"gzip: {exc}") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise Rejection(413, "too_large", f"body inflates past {limit} bytes")
    if not inflater.eof:
        raise Rejection(400, "malformed", "gzip: truncated")
    if inflater.unused_data:
        # a second member or trailing bytes: what was signed is ambiguous, so refuse it
        raise Rejection(400, "malformed", "gzip: data after the end of the stream")
    return plain


def _admit(body: bytes) -> tuple[Batch, registry.BatchKey]:
    """Check signature, schema, sender and age; the batch and its ledger key, or Rejection."""
    try:
        verified = verify1(body, registered_key)
        batch = decode_batch(verified.payload)
    except WireError as exc:
        status, code = WIRE_FAULTS.get(exc.reason, (400, "malformed"))
        raise Rejection(status, code, exc.detail) from None
    if batch.gateway != verified.kid:
        raise Rejection(403, "gateway_mismatch",
                        f"batch names gateway {batch.gateway!r} but is signed by {verified.kid!r}")
    _check_age(batch)
    try:
        plausible.check_records(batch.records, batch.sent_ms,
                                _config().ingest.max_clock_skew_s * 1000)
    except plausible.Implausible as exc:
        raise Rejection(422, "invalid_batch", str(exc)) from None
    digest = hashlib.sha256(verified.payload).hexdigest()
    return batch, registry.BatchKey(batch.gateway, batch.epoch, batch.seq, digest)


def _check_age(batch: Batch) -> None:
    """Refuse batches outside the replay window, the span the ledger is guaranteed to cover."""
    limits = _config().ingest
    now = now_ms()
    if limits.replay_window_s and batch.sent_ms < now - limits.replay_window_s * 1000:
        raise Rejection(422, "stale_batch",
                        f"sent {(now - batch.sent_ms) // 1000} s ago, beyond the replay window "
                        f"of {limits.replay_window_s} s")
    if batch.sent_ms > now + limits.max_clock_skew_s * 1000:
        raise Rejection(422, "future_batch",
                        f"sent {(batch.sent_ms - now) // 1000} s in the future; "
                        f"check the gateway's clock")


def _store(batch: Batch, key: registry.BatchKey, received_ms: int) -> bool:
    """Apply batch in one transaction; False if its key was already applied (BatchConflict
    if with other content).

    A store outside the SQL database gets the points first, before the ledger
    transaction opens: a failure in between is repaired by the gateway's resend.
    Its devices are claimed before that write, so no point of a device another
    gateway owns ever reaches it; the ledger transaction checks ownership again.
    The claim is a write transaction of its own, skipped when the read that
    looks up the ledger finds every device already bound to this gateway (the
    steady state: it saves a commit per batch).
    """
    sessions = database.sessions()
    store = timeseries.store()
    try:
        if not store.shares_transaction:
            with sessions() as session:
                session.connection(execution_options={database.READ_ONLY: True})
                if registry.batch_seen(session, key):
                    return False
                owned = registry.owns_all(session, batch.gateway,
                                          (r.device for r in batch.records))
            if not owned:
                with sessions.begin() as session:
                    _claim(session, batch, received_ms)
            store.write(batch.gateway, batch.records, None)
        with sessions.begin() as session:
            if registry.batch_seen(session, key):
                return False
            _claim(session, batch, received_ms)
            registry.record_batch(session, key, batch.sent_ms, received_ms,
                                  len(batch.records))
            if store.shares_transaction:
                store.write(batch.gateway, batch.records, session.connection())
            registry.touch_devices(session, batch.gateway,
                                   (r.device for r in batch.records), received_ms)
            sealed_store.write(session, batch.gateway, batch.records, received_ms)
            raw_store.write(session, batch.gateway, batch.records, received_ms)
    except IntegrityError:
        # Another request may have committed the same key first.
        with sessions() as session:
            if registry.batch_seen(session, key):
                return False
        raise
    return True


def _claim(session: Session, batch: Batch, now: int) -> None:
    """Bind batch's new devices to its gateway; Rejection if another gateway owns one."""
    foreign = registry.claim_devices(session, batch.gateway,
                                     (r.device for r in batch.records), now)
    if foreign:
        shown = ", ".join(repr(d) for d in foreign[:5])
        raise Rejection(422, "foreign_device",
                        f"{len(foreign)} device(s) belong to another gateway ({shown}); "
                        "an operator may move them")


def _config() -> CloudConfig:
    config: CloudConfig = current_app.config["TANDEM"]
    return config
