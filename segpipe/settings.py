"""Service settings from the environment (``SEGPIPE_*``), with embedded defaults that need no server.

Defaults keep everything under ``SEGPIPE_HOME`` (``./.segpipe``): a SQLite store, a SQLite broker
(kombu's SQLAlchemy transport, which works across processes) and the artifact root. Production points
``SEGPIPE_DATABASE_URL`` at PostgreSQL and ``SEGPIPE_BROKER_URL`` at Redis.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from segpipe.storage.uri import Location, is_uri, to_location

ROLES = ("annotator", "engineer", "admin")
SNAPSHOTS_DIR = "snapshots"  # dataset snapshots, inside the artifact root (segpipe.snapshots.store)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEGPIPE_", extra="ignore")

    home: Path = Field(Path(".segpipe"), description="home of the embedded defaults (store, broker, artifacts, caches)")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the store (postgresql+psycopg://… in production); default: "
        "sqlite:///$SEGPIPE_HOME/segpipe.db")
    broker_url: str | None = Field(
        None, description="Celery broker (redis://… in production); default: sqla+sqlite:///$SEGPIPE_HOME/broker.db")
    data_roots: Annotated[list[Location], NoDecode] = Field(
        default_factory=list,
        description="folders or object-store URIs (s3://bucket/prefix) requests may read from (os.pathsep- or comma-separated)",
    )
    artifact_root: Location | None = Field(None, description="local folder or object-store URI for job files")
    cache_max_gb: float = Field(20.0, gt=0, description="a worker's cache of downloads from object storage")
    tokens: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="API tokens as 'token:role,token:role' (roles: annotator, engineer, admin)"
    )
    lease_seconds: float = Field(60.0, gt=0, description="a running job's lease; renewed by its heartbeat")
    heartbeat_seconds: float = Field(10.0, gt=0, description="how often a running job renews its lease")
    lost_message_seconds: float = Field(
        30.0, gt=0, description="the reconciler checks a job queued this long for a lost broker message"
    )
    visibility_timeout: int = Field(4 * 3600, description="Redis: seconds before an unacked message is redelivered")
    weights_mirror: str | None = Field(
        None,
        description="a URL prefix standing in for the hosts of named pretrained weights (torchvision:…, smp:…): "
        "the file's URL path is appended to it; unset: the libraries' own URLs",
    )
    advertise_host: str | None = Field(
        None, description="the address other hosts reach this worker at: a multi-node training's rendezvous (c10d "
        "store) and its rank-0 process group listen here (SEGPIPE_ADVERTISE_HOST; None: this host's FQDN)"
    )
    rendezvous_port: int = Field(
        0, ge=0, le=65535, description="the TCP port of the c10d rendezvous a training's first node hosts (0: a free one)"
    )
    model_cache_models: int = Field(2, ge=0, description="models a worker keeps loaded between jobs and shards")
    max_upload_mb: float = Field(50.0, gt=0, description="size limit per uploaded file (and per Label Studio image)")
    max_config_kb: float = Field(256.0, gt=0, description="size limit for a submitted config")
    max_upload_files: int = Field(500, ge=1, description="image files per POST /uploads")
    # -- limits on what comes in (docs/operations.md has the whole table) --
    max_image_megapixels: float = Field(
        40.0, gt=0, description="pixels (width × height, in millions) any image may have, at every door; "
                                "read from the header before decoding")
    max_image_mb: float = Field(50.0, gt=0, description="bytes (MB) any image file may have, at every door")
    max_annotations_per_dataset: int = Field(
        500_000, ge=1, description="annotations one COCO file may hold; checked before the annotations are loaded")
    max_annotations_per_image: int = Field(10_000, ge=1, description="annotations one image may carry")
    # -- disk --
    min_free_mb: float = Field(
        256.0, ge=0, description="free space kept on a disk besides what a heavy write (checkpoint, export, inbox) needs")
    ls_inbox_max_mb: float = Field(
        1024.0, gt=0, description="the Label Studio inbox (task images waiting for a worker) is refused past this size")
    run_retention_days: float | None = Field(
        None, gt=0, description="`segpipe gc` removes files of jobs finished more than this many days ago, "
                                "except what a model version needs (None: keep everything)")
    schedule: Path = Field(
        Path("configs/schedule.yaml"), description="the retraining schedule file (SEGPIPE_SCHEDULE)"
    )
    retrain_tick_seconds: float = Field(60.0, gt=0, description="beat: seconds between retraining schedule ticks")
    # -- Label Studio ML backend (segpipe.api.labelstudio) --
    label_studio_url: str | None = Field(
        None, description="the Label Studio server whose /data/… image URLs the ML backend may fetch (SEGPIPE_LABEL_STUDIO_URL)"
    )
    label_studio_token: str | None = Field(None, description="Label Studio API token used to fetch its images")
    label_studio_files_root: Path | None = Field(
        None, description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: /data/local-files/?d=… paths resolve under it"
    )
    ls_predict_timeout: float = Field(60.0, gt=0, description="seconds /ls/…/predict waits for a worker's predictions")
    ls_max_tasks: int = Field(64, ge=1, description="tasks per /ls/…/predict request")
    http_header_timeout: float = Field(
        10.0, gt=0, description="API server: seconds a client has to send a request's line and headers"
    )
    http_keep_alive_timeout: int = Field(5, ge=1, description="API server: seconds an idle keep-alive connection stays open")
    metrics_token: str | None = Field(
        None, description="the bearer token Prometheus scrapes /metrics with (API and workers); admin tokens work on the API too"
    )
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="a worker serves /metrics on this port (with --gpus: port + GPU index); unset: off"
    )
    worker_metrics_host: str = Field("127.0.0.1", description="the address a worker's /metrics listens on")
    log_format: Literal["text", "json"] = Field(
        "text", description="'json': one JSON object per log line, with the job id of the job that logged it"
    )
    page_session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="a review-page login lasts this long; logout ends it at once"
    )
    auth: Literal["on", "off"] = Field(
        "on", description="'off' runs the HTTP API without tokens, for a local demo: it then answers loopback clients only"
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, v: object) -> object:
        if isinstance(v, str):
            parts = [p for chunk in v.split(",") for p in (
                [chunk] if is_uri(chunk.strip()) else chunk.split(":"))]
            return [to_location(p.strip()) for p in parts if p.strip()]
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
        """The artifact root: a resolved local folder, or a `Uri` (then workers keep a local mirror)."""
        if is_uri(self.artifact_root):
            return self.artifact_root  # type: ignore[return-value]  # a Uri stands for a Path
        return Path(self.artifact_root or self.home_dir / "artifacts").expanduser().resolve()

    @property
    def roots(self) -> list[Path]:
        """Allowed data roots, resolved (URIs as given), then the artifact root's snapshots folder or prefix:
        a dataset snapshot (`segpipe.snapshots`) is data every job may read, wherever the data roots are —
        a retraining bound to a Label Studio project trains on one."""
        roots = [p if is_uri(p) else Path(p).expanduser().resolve() for p in self.data_roots] or [self.home_dir / "data"]
        # (in an object-store artifact root, the snapshots prefix: a `Uri`, which stands for a Path here)
        roots.append(self.artifacts / SNAPSHOTS_DIR)
        return roots  # type: ignore[return-value]  # a Uri stands for a Path

    @property
    def cache_dir(self) -> Path:
        """This worker's own cache: downloads from object storage and the mirror of a remote artifact root."""
        return self.home_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
