from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.settings import Settings


def test_defaults_need_no_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AQPL_DATABASE_URL", raising=False)
    monkeypatch.delenv("AQPL_BROKER_URL", raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'aqpl.sqlite3'}"
    assert settings.broker_url == "filesystem://"
    assert settings.is_sqlite and settings.is_embedded_broker
    assert settings.import_root == tmp_path / "imports"


def test_environment_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQPL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AQPL_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("AQPL_DEVICE", "cpu")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.broker_url == "redis://127.0.0.1:6379/3"
    assert settings.device == "cpu"


def test_local_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).secret_key.get_secret_value()
    second = Settings(data_dir=tmp_path).secret_key.get_secret_value()
    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", ["", "change-me", "short"])
def test_production_refuses_placeholder_secret(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="AQPL_SECRET_KEY"):
        Settings(data_dir=tmp_path, environment="production", secret_key=secret)


def test_production_accepts_a_real_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, environment="production", secret_key="x" * 48)
    assert settings.secret_key.get_secret_value() == "x" * 48


def test_invalid_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="device"):
        Settings(data_dir=tmp_path, device="tpu")  # type: ignore[arg-type]
