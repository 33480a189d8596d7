"""docker-compose.yml cannot run here (no Docker engine): check that it matches the code instead."""

import shlex
from typing import Any

import yaml

from backend.settings import Settings
from cli.main import app as cli_app
from tests.support import REPO_ROOT


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return loaded


def test_services_are_the_distributed_deployment() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
    assert "healthcheck" in services["postgres"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_environment_uses_only_real_settings() -> None:
    known = {f"AQPL_{name.upper()}" for name in Settings.model_fields}
    for name in ("migrate", "api", "worker"):
        environment = _compose()["services"][name]["environment"]
        assert set(environment) <= known, set(environment) - known
        assert environment["AQPL_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert environment["AQPL_BROKER_URL"].startswith("redis://")
        assert environment["AQPL_ENVIRONMENT"] == "production"


def test_commands_are_real_cli_commands() -> None:
    """Each service's command parses with the real `aqpl` CLI: unknown commands or options fail here."""
    import click
    from typer.main import get_command

    for name in ("migrate", "api", "worker"):
        command = _compose()["services"][name]["command"]
        argv = command if isinstance(command, list) else shlex.split(command)
        assert argv[0] == "aqpl"
        node: click.Command = get_command(cli_app)
        rest = list(argv[1:])
        while isinstance(node, click.Group):
            node = node.commands[rest.pop(0)]
        node.make_context(node.name or "", rest)  # raises on an unknown option or a bad value


def test_database_credentials_match_postgres_service() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]["environment"]
    url = compose["services"]["api"]["environment"]["AQPL_DATABASE_URL"]
    assert (
        f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/{postgres['POSTGRES_DB']}"
        in url
    )
