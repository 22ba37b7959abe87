"""Configuration of the worker process."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from clausework.pipeline import DEFAULT_TASK_QUEUE
from clausework.runtime.settings import PIPELINE_CPU_NICE, ServerSettings, StoreClientSettings
from clausework.runtime.webhook_targets import WebhookTargetSettings


class WorkerSettings(WebhookTargetSettings, StoreClientSettings, ServerSettings):
    """The worker serves only gRPC health (for probes) on its port; its work comes from Temporal."""

    model_config = SettingsConfigDict(env_prefix="WORKER_")

    port: int = 50055
    cpu_nice: int = Field(default=PIPELINE_CPU_NICE, ge=0, le=19)  # below submits (ServerSettings)
    temporal_address: str = Field(default="127.0.0.1:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    task_queue: str = Field(default=DEFAULT_TASK_QUEUE, validation_alias="TEMPORAL_TASK_QUEUE")
    parser_address: str = Field(default="127.0.0.1:50052", validation_alias="PARSER_ADDRESS")
    llm_address: str = Field(default="127.0.0.1:50053", validation_alias="LLM_ADDRESS")
    # Activities mostly wait on gRPC calls, so many can run at once per worker.
    max_concurrent_activities: int = 64
    max_concurrent_workflow_tasks: int = 64
    # The Temporal SDK's own metrics (Prometheus format, served by its core) on this port; 0 = off.
    temporal_metrics_port: int = 0
    # The retention schedule (orchestrator/schedules.py): how often it runs, and how many expired
    # extractions one activity call turns into delete requests (a run makes at most 10 calls).
    retention_sweep_seconds: float = Field(default=300.0, ge=1, validation_alias="RETENTION_SWEEP_SECONDS")
    retention_batch: int = Field(default=200, ge=1, le=1000, validation_alias="RETENTION_BATCH")
    # Completion webhooks (orchestrator/webhooks.py): `whsec_<base64>` secrets (from the Secret), the
    # default and `tenant:whsec_...` pairs for tenants with their own; a delivery attempt's time limit.
    webhook_signing_secret: SecretStr | None = Field(default=None, validation_alias="WEBHOOK_SIGNING_SECRET")
    webhook_tenant_signing_secrets: SecretStr | None = Field(
        default=None, validation_alias="WEBHOOK_TENANT_SIGNING_SECRETS"
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60, validation_alias="WEBHOOK_TIMEOUT_SECONDS")
    # Tenants (comma separated) whose `extraction.succeeded` events carry their clauses, text included:
    # an operator's opt-in, since an event leaves the deployment; everyone else's carry ids, state,
    # error code and counts only. Not a secret (tenant ids), so it lives in the ConfigMap.
    webhook_clause_text_tenants: str = Field(default="", validation_alias="WEBHOOK_CLAUSE_TEXT_TENANTS")

    def clause_text_tenants(self) -> frozenset[str]:
        """WEBHOOK_CLAUSE_TEXT_TENANTS as a set (blanks and spaces around names ignored)."""
        return frozenset(
            name for name in (part.strip() for part in self.webhook_clause_text_tenants.split(",")) if name
        )
