"""Scopes of the API and what each role may hold."""

from __future__ import annotations

from backend.models import Role

MANAGE = "manage"  # projects, rounds, users, exports, tokens (leads: their own projects)
CHECKPOINTS_READ = "checkpoints:read"
ANNOTATE = "annotate"
# GET /metrics: the platform's counters across every project, for a Prometheus scraper (admins only).
METRICS_READ = "metrics:read"
ALL_SCOPES = (MANAGE, CHECKPOINTS_READ, ANNOTATE, METRICS_READ)

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.admin: frozenset(ALL_SCOPES),
    Role.lead: frozenset({MANAGE, CHECKPOINTS_READ, ANNOTATE}),
    Role.annotator: frozenset({ANNOTATE}),
}


def effective_scopes(role: Role, token_scopes: list[str]) -> frozenset[str]:
    """What a request may do: the token's scopes, cut down to what the user's role allows today."""
    return ROLE_SCOPES[role] & frozenset(token_scopes)
