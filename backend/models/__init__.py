"""ORM models: one package, imported by the API, the worker and Alembic."""

from backend.models.annotation import Annotation, Assignment, AssignmentState
from backend.models.checkpoint import Checkpoint
from backend.models.example import Example, SigmaChange, SigmaSource, Split
from backend.models.gold import GoldExample, GoldSource
from backend.models.membership import ProjectMember
from backend.models.project import Project, ProjectStatus, ProjectStep
from backend.models.round import Query, QuerySide, Round, RoundState, Score
from backend.models.system import WorkerHeartbeat
from backend.models.user import ApiToken, Role, User
from backend.models.webhook import DeliveryStatus, WebhookDelivery, WebhookEndpoint

__all__ = [
    "Annotation",
    "ApiToken",
    "Assignment",
    "AssignmentState",
    "Checkpoint",
    "DeliveryStatus",
    "Example",
    "GoldExample",
    "GoldSource",
    "Project",
    "ProjectMember",
    "ProjectStatus",
    "ProjectStep",
    "Query",
    "QuerySide",
    "Role",
    "Round",
    "RoundState",
    "Score",
    "SigmaChange",
    "SigmaSource",
    "Split",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkerHeartbeat",
]
