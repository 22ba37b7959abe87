"""Configuration of the store process (environment variables; defaults fit `make up`)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from clausework.pipeline import DEFAULT_TASK_QUEUE
from clausework.runtime.settings import ServerSettings


class StoreSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_")

    port: int = 50054
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:54320/clausework", validation_alias="DATABASE_URL"
    )
    database_pool_size: int = Field(default=10, validation_alias="DATABASE_POOL_SIZE")
    s3_endpoint_url: str | None = Field(default="http://127.0.0.1:8333", validation_alias="S3_ENDPOINT_URL")
    s3_bucket: str = Field(default="clausework", validation_alias="S3_BUCKET")
    s3_region: str = Field(default="us-east-1", validation_alias="S3_REGION")
    # SeaweedFS without an IAM config accepts any key; real S3 takes these or the usual AWS chain.
    aws_access_key_id: str | None = Field(default="clausework", validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: str | None = Field(default="clausework", validation_alias="AWS_SECRET_ACCESS_KEY")

    # The outbox relay (services/store/relay.py) starts workflows and delivers cancels through Temporal.
    temporal_address: str = Field(default="127.0.0.1:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default=DEFAULT_TASK_QUEUE, validation_alias="TEMPORAL_TASK_QUEUE")
    relay_poll_seconds: float = 2.0
    # Signs ListExtractions page tokens; the same on every replica (a Secret in production). Unset: a
    # random key per process, logged, so tokens do not survive a restart or cross replicas.
    page_token_key: SecretStr | None = None
    # The janitor (services/store/janitor.py): how often it sweeps, and how old a leftover must be.
    sweep_interval_seconds: float = 300.0
    upload_grace_seconds: float = 3600.0
    sweep_settle_seconds: float = 60.0
    # Retention (services/store/retention.py): days an extraction is kept when its request names no
    # retention (unset = kept until deleted), and the most any extraction is kept (unset = no cap).
    retention_days: float | None = Field(default=None, gt=0, validation_alias="RETENTION_DAYS")
    retention_max_days: float | None = Field(default=None, gt=0, validation_alias="RETENTION_MAX_DAYS")
    # A DeletionWorkflow sweeps the id's objects again this long after purging, for a cancelled parser
    # or llm call that landed an object late.
    deletion_settle_seconds: float = Field(default=60.0, ge=0, validation_alias="DELETION_SETTLE_SECONDS")
