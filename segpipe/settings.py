"""Service settings from the environment (``SEGPIPE_*``), with embedded defaults that need no server.

Defaults keep everything under ``SEGPIPE_HOME`` (``./.segpipe``): a SQLite store, a SQLite broker
(kombu's SQLAlchemy transport, which works across processes) and the artifact root. Production points
``SEGPIPE_DATABASE_URL`` at PostgreSQL and ``SEGPIPE_BROKER_URL`` at Redis.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

ROLES = ("annotator", "engineer", "admin")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEGPIPE_", extra="ignore")

    home: Path = Path(".segpipe")
    database_url: str | None = None
    broker_url: str | None = None
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders requests may read from (os.pathsep- or comma-separated)"
    )
    artifact_root: Path | None = None
    tokens: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="API tokens as 'token:role,token:role' (roles: annotator, engineer, admin)"
    )
    lease_seconds: float = Field(60.0, gt=0, description="a running job's lease; renewed by its heartbeat")
    heartbeat_seconds: float = Field(10.0, gt=0)
    lost_message_seconds: float = Field(
        30.0, gt=0, description="the reconciler checks a job queued this long for a lost broker message"
    )
    visibility_timeout: int = Field(4 * 3600, description="Redis: seconds before an unacked message is redelivered")
    max_upload_mb: float = Field(50.0, gt=0)
    max_config_kb: float = Field(256.0, gt=0)
    max_upload_files: int = Field(500, ge=1, description="image files per POST /uploads")
    schedule: Path = Field(
        Path("configs/schedule.yaml"), description="the retraining schedule file (SEGPIPE_SCHEDULE)"
    )
    retrain_tick_seconds: float = Field(60.0, gt=0, description="beat: seconds between retraining schedule ticks")
    auth: Literal["on", "off"] = Field(
        "on", description="'off' runs the HTTP API without tokens, for a local demo: it then answers loopback clients only"
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, v: object) -> object:
        if isinstance(v, str):
            parts = [p for chunk in v.split(",") for p in chunk.split(":")]
            return [Path(p) for p in parts if p.strip()]
        return v

    @field_validator("tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, v: object) -> object:
        if isinstance(v, str):
            tokens = {}
            for item in filter(None, (s.strip() for s in v.split(","))):
                token, _, role = item.rpartition(":")
                if not token or role not in ROLES:
                    raise ValueError(f"SEGPIPE_TOKENS entry {item!r}: expected token:role with role in {ROLES}")
                tokens[token] = role
            return tokens
        return v

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'segpipe.db'}"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home_dir / 'broker.db'}"

    @property
    def artifacts(self) -> Path:
        return (self.artifact_root or self.home_dir / "artifacts").expanduser().resolve()

    @property
    def roots(self) -> list[Path]:
        """Allowed data roots, resolved; the artifact root is always readable."""
        return [p.expanduser().resolve() for p in self.data_roots] or [self.home_dir / "data"]


@lru_cache
def get_settings() -> Settings:
    return Settings()
