"""Who may do what: the permissions routes declare, and the one table granting them to roles.

A route declares the permission it needs (`tandem.cloud.access.auth.require`); a principal
has it when its role's row below lists it. Changing who may do what is an
edit of `ROLE_PERMISSIONS`, nowhere else.
"""

from __future__ import annotations

import enum


class Permission(enum.StrEnum):
    """Something a route may require; the value is what logs and errors show."""

    ACCOUNT_SELF = "account:self"  # see and end one's own session
    API_DESCRIBE = "api:describe"  # read the OpenAPI description
    DATA_READ = "data:read"  # summaries, events, devices
    DATA_EXPORT = "data:export"  # bulk training-data export
    DATA_RAW = "data:raw"  # request raw waveform snippets from the edge, and read them
    FLEET_READ = "fleet:read"  # list gateways
    FLEET_MANAGE = "fleet:manage"  # register and revoke gateways
    FLEET_ENROL = "fleet:enrol"  # issue one-time installer tokens
    FLEET_READMIT = "fleet:readmit"  # let a revoked gateway enrol again (admins only)
    GATEWAY_ENROL = "gateway:enrol"  # enrol a gateway with an installer token
    POLICY_READ = "policy:read"  # read signed security policies
    POLICY_PUSH = "policy:push"  # sign and push security policies
    MODELS_READ = "models:read"  # list model versions and releases
    MODELS_MANAGE = "models:manage"  # promote and release model versions
    MODELS_FORCE = "models:force"  # promote a version that does not beat the deployed one
    METRICS_READ = "metrics:read"  # Prometheus /metrics
    AUDIT_READ = "audit:read"  # read the audit log
    USERS_MANAGE = "users:manage"  # users and API tokens
    LABELS_WRITE = "labels:write"  # label windows and alarms (fault / false alarm / normal)
    TASKS_RUN = "tasks:run"  # submit analysis tasks to the edge-cloud scheduler, read results


class Role(enum.StrEnum):
    """The roles a user (or an installer token) can have."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    INSTALLER = "installer"  # held only by one-time installer tokens, never by a user


_VIEWER = frozenset({
    Permission.ACCOUNT_SELF, Permission.API_DESCRIBE, Permission.DATA_READ,
    Permission.FLEET_READ, Permission.POLICY_READ, Permission.METRICS_READ,
    Permission.MODELS_READ,
})
_OPERATOR = _VIEWER | {
    Permission.DATA_EXPORT, Permission.FLEET_MANAGE, Permission.FLEET_ENROL,
    Permission.POLICY_PUSH, Permission.DATA_RAW, Permission.LABELS_WRITE, Permission.MODELS_MANAGE,
    Permission.TASKS_RUN,
}
_ADMIN = _OPERATOR | {Permission.AUDIT_READ, Permission.USERS_MANAGE,
                      Permission.FLEET_READMIT, Permission.MODELS_FORCE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _OPERATOR,
    Role.ADMIN: _ADMIN,
    Role.INSTALLER: frozenset({Permission.GATEWAY_ENROL}),
}
USER_ROLES = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)


def granted(role: str, permission: str) -> bool:
    """True when role's row lists permission (unknown roles have nothing)."""
    try:
        return Permission(permission) in ROLE_PERMISSIONS.get(Role(role), frozenset())
    except ValueError:
        return False
