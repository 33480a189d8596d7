import gc
from pathlib import Path

from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.db import POOL_SIZE, create_db_engine, warm_pool
from backend.migrate import alembic_config
from backend.settings import Settings
from tests.support import free_port


def test_health_reports_database_and_embedded_broker_up(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["revision"] == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert body["broker"] == {"ok": True, "transport": "filesystem"}
    assert "versions" not in body  # admins only: tests/security/test_disclosure.py


def test_health_reports_redis_up(database_url: str, redis_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, broker_url=redis_url)
    with TestClient(create_app(settings)) as client:
        body = client.get("/api/v1/health").json()
    assert body["broker"] == {"ok": True, "transport": "redis"}


def test_health_reports_broker_down_with_503(database_url: str, tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(data_dir=tmp_path, database_url=database_url, broker_url=dead_redis)
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False
    assert response.json()["database"]["ok"] is True


def test_health_reports_database_down_with_503(tmp_path: Path) -> None:
    dead_postgres = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2"
    settings = Settings(data_dir=tmp_path, database_url=dead_postgres)
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["database"]["ok"] is False
    assert "nobody" not in response.text  # no connection details leak


def test_openapi_docs_are_served(database_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=database_url))) as client:
        assert client.get("/api/docs").status_code == 200
        assert "/api/v1/health" in client.get("/openapi.json").json()["paths"]


def test_the_connection_pool_is_open_before_the_first_request(database_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=database_url))) as client:
        pool = client.app.state.engine.pool  # type: ignore[attr-defined]
        assert pool.checkedin() >= min(POOL_SIZE, pool.size())  # connected at start-up, not on demand


def test_warming_the_pool_of_an_unreachable_database_reports_it_and_raises_nothing() -> None:
    engine = create_db_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")
    try:
        assert warm_pool(engine) is False
        assert engine.pool.checkedin() == 0
    finally:
        engine.dispose()


def test_the_running_app_keeps_its_start_up_objects_out_of_full_collections(
    database_url: str, tmp_path: Path
) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=database_url))):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # given back to the collector when the app stops
