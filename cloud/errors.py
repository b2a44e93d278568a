"""JSON error bodies: every failure the service answers is {"error": code, "detail": text}."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class Rejection(Exception):
    """A request refused with an HTTP status and a stable error code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class StorageUnavailable(Exception):
    """A store that cannot be reached or refuses to work now; the request may be retried."""


class RecordsRefused(ValueError):
    """Records the configured store can never hold (e.g. a time outside its range)."""


def error_response(status: int, code: str, detail: str) -> tuple[Response, int]:
    """The JSON error body with its status."""
    return jsonify(error=code, detail=detail), status


def init_app(app: Flask) -> None:
    """Answer HTTP errors, rejections and storage failures with JSON bodies."""
    app.register_error_handler(Rejection, _rejection)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SQLAlchemyError, _storage_error)
    app.register_error_handler(StorageUnavailable, _storage_error)


def _rejection(exc: Rejection) -> tuple[Response, int]:
    return error_response(exc.status, exc.code, exc.detail)


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    code = (exc.name or "error").lower().replace(" ", "_")
    status = exc.code or 500
    response, _ = error_response(status, code, exc.description or code)
    for name, value in exc.get_headers():
        if name.lower() == "allow":
            response.headers[name] = value
    return response, status


def _storage_error(exc: SQLAlchemyError | StorageUnavailable) -> tuple[Response, int]:
    # A 503 tells a gateway to keep the batch and retry later.
    log.error("storage failure: %s", exc)
    response, status = error_response(503, "storage_unavailable", "storage is unavailable")
    response.headers["Retry-After"] = "5"
    return response, status
