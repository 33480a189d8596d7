"""One typed settings object, read from `AQPL_*` environment variables (and `.env`)."""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.files import create_private_file

# Secrets that must never reach production: the compose file's example and common fillers.
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "please-change-me", "dev"})


class Settings(BaseSettings):
    """Every setting the platform reads; `AQPL_<NAME>` in the environment overrides each."""

    model_config = SettingsConfigDict(env_prefix="AQPL_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    # Defaults to a SQLite file under data_dir: nothing to install for one machine.
    database_url: str = ""
    # Defaults to kombu's filesystem transport under data_dir: a broker that needs no server.
    broker_url: str = ""
    # Generated once and kept in data_dir/secret_key for local use; required in production.
    # Celery queue the API sends to and workers consume (separate deployments can share one Redis).
    queue: str = Field(default="aqpl", pattern=r"^[A-Za-z0-9_.-]+$")
    secret_key: SecretStr = SecretStr("")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Arithmetic of the worker's scoring: auto = bf16 with channels-last on CUDA and on CPUs with
    # native bf16 (AVX-512 BF16 or AMX), fp32 elsewhere; int8 (CPU only) quantizes the model per job.
    scoring_precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    # Dataset paths given to the API must lie under this folder (defaults to data_dir/imports).
    import_root: Path | None = None
    # Seconds an annotator keeps a task before it returns to the pool (renewed while the page is open).
    lease_seconds: int = Field(default=300, ge=10)
    # Largest request body the API accepts, in bytes (uploads included).
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # Decompressed bytes a dataset may hold (images and labels), checked from its headers by the API
    # and the worker alike (aqpl.datasets); an upload must also unpack within max_upload_bytes.
    max_dataset_bytes: int = Field(default=2 * 1024**3, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # One line per event on stderr: `text` for people, `json` (one object a line) for log collectors.
    log_format: Literal["text", "json"] = "text"
    # Seconds before Redis hands an unacknowledged task (its worker died) to another worker.
    # Longer than any step, since a task still running past it is delivered a second time;
    # tests set a few seconds to see a killed worker's task come back.
    broker_visibility_timeout: int = Field(default=6 * 3600, ge=1)
    # Seconds a worker job may run: past the soft limit it is interrupted and its step fails with a
    # message; past the hard limit its process is killed and the step fails. Keep soft < hard <
    # broker_visibility_timeout, so that a job ends before Redis would hand it to another worker.
    job_soft_time_limit: int = Field(default=5 * 3600, ge=1)
    job_time_limit: int = Field(default=5 * 3600 + 15 * 60, ge=1)
    # Times a job whose worker died under it is handed out again before its step is marked failed
    # (a job that kills its worker every time must not go round for ever).
    job_max_redeliveries: int = Field(default=2, ge=0)
    # Requests one API process works on at once; one more is refused at once with 503 and
    # Retry-After (a queue that grows until clients time out helps nobody). A few per core keep the
    # CPU busy; each one more adds its service time to everyone's latency and makes the event loop
    # (which answers the refusals) wait longer for the GIL (docs/load.md). Keep it at or under the
    # connection pool (size + overflow) and the thread pool (40).
    max_requests_in_flight: int = Field(default=8, ge=1)
    # Database connections each API process keeps open, and how many more it may open under bursts.
    database_pool_size: int = Field(default=10, ge=1)
    database_pool_overflow: int = Field(default=20, ge=0)
    # Seconds a request waits for a free connection before it is refused with 503 (a backstop: with
    # max_requests_in_flight <= pool size + overflow, no request waits for one).
    database_pool_timeout: float = Field(default=2.0, gt=0)
    # Seconds a client refused with 503 is told to wait (Retry-After) before trying again.
    retry_after_seconds: int = Field(default=1, ge=1)
    # Reverse proxies whose X-Forwarded-For header names the client: comma-separated addresses or
    # networks (`*`: any peer). Empty: the peer is the client whatever its headers say, so nobody can
    # pick a new address per request to escape the login throttle (docs/access-and-tasks.md).
    forwarded_allow_ips: str = ""
    # Password checks one API process runs at once (Argon2id: ~0.33 s of CPU and 64 MiB each); a
    # login that waits a second for one is refused with 503 and Retry-After.
    max_concurrent_password_hashes: int = Field(default=2, ge=1)
    # Interactive API docs at /api/docs, served from an installed package (no CDN). Unset: on in
    # development, off in production.
    api_docs: bool | None = None
    # Webhook targets on loopback, private, link-local or otherwise non-public addresses are refused
    # (at registration and again at each delivery, against DNS rebinding) unless this is true.
    webhook_allow_private: bool = False
    # Attempts per webhook delivery before it is given up; the wait before attempt n+1 is
    # webhook_backoff_seconds * 2**(n-1) (10 s, 20 s, 40 s, ... with the defaults: ~5 min in all).
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    webhook_backoff_seconds: float = Field(default=10.0, ge=0)
    # Seconds a receiver has to connect and answer one delivery.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        for entry in entries:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"AQPL_FORWARDED_ALLOW_IPS: {entry!r} is not an address or network"
                    ) from None
        return ",".join(entries)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'aqpl.sqlite3'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if self.import_root is None:
            self.import_root = self.data_dir / "imports"
        self.import_root = self.import_root.expanduser().resolve()
        secret = self.secret_key.get_secret_value()
        if self.environment == "production":
            if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 32:
                raise ValueError(
                    "AQPL_SECRET_KEY must be set to a random value of at least 32 characters in production "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
        elif not secret:
            self.secret_key = SecretStr(_local_secret(self.data_dir))
        return self

    @model_validator(mode="after")
    def _check_job_limits(self) -> Settings:
        # Celery's pool starts the hard limit's clock when the soft one runs out: it must be longer.
        if self.job_time_limit <= self.job_soft_time_limit:
            raise ValueError("AQPL_JOB_TIME_LIMIT must be longer than AQPL_JOB_SOFT_TIME_LIMIT")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def api_docs_enabled(self) -> bool:
        return self.environment != "production" if self.api_docs is None else self.api_docs

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem")

    @property
    def broker_dir(self) -> Path:
        """Folder of the embedded (filesystem) broker's messages."""
        return self.data_dir / "broker"

    @property
    def storage_dir(self) -> Path:
        """Dataset arrays, corruption caches and checkpoints."""
        return self.data_dir / "storage"


def _local_secret(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        create_private_file(path, secrets.token_urlsafe(48))  # 0600 from the start
    return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
