"""Configuration of the store process (environment variables; defaults fit `make up`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServerSettings


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
