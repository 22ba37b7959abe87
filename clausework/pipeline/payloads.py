"""The dataclasses that cross Temporal's boundary: workflow and activity inputs and outputs.

Claim-check: they carry ids and object keys, never PDF bytes or document text, so workflow history
stays small whatever the document's size (Temporal caps a payload at 2 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

WORKFLOW_NAME = "ExtractionWorkflow"
DELETION_WORKFLOW_NAME = "DeletionWorkflow"
RETENTION_WORKFLOW_NAME = "RetentionWorkflow"


def workflow_id(extraction_id: str) -> str:
    """One workflow per extraction: starting it twice is rejected by Temporal, not run twice."""
    return f"extraction-{extraction_id}"


def deletion_workflow_id(extraction_id: str) -> str:
    """One deletion per extraction, like its extraction workflow."""
    return f"deletion-{extraction_id}"


def parsed_key(extraction_id: str) -> str:
    return f"extractions/{extraction_id}/parsed.pb"


def clauses_key(extraction_id: str) -> str:
    return f"extractions/{extraction_id}/clauses.pb"


@dataclass(frozen=True)
class ExtractionInput:
    extraction_id: str
    document_key: str
    # Whether a completion webhook is wanted (its URL stays in the store: history holds no addresses).
    webhook: bool = False


@dataclass(frozen=True)
class ExtractionOutcome:
    extraction_id: str
    clause_count: int
    result_key: str


@dataclass(frozen=True)
class StatusUpdate:
    """The final write of a failed or cancelled extraction (the work activities record the others)."""

    extraction_id: str
    state: int  # contracts.v1.State
    stage: int  # contracts.v1.Stage
    page_count: int = 0
    char_count: int = 0
    error_code: str = ""
    error_message: str = ""
    pages_parsed: int = 0
    pages_total: int = 0
    # The write that ends the workflow: retried without limit, since the row must record how it ended.
    final: bool = False


@dataclass(frozen=True)
class StatusOutput:
    """The extraction's state after an update: a terminal state another writer recorded wins."""

    state: int  # contracts.v1.State
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class ParseInput:
    extraction_id: str
    source_key: str
    target_key: str


@dataclass(frozen=True)
class ParseOutput:
    page_count: int
    char_count: int
    # Set when the row was already terminal at the first step (cancelled before the start was recorded):
    # nothing was parsed, and the workflow ends the way the row says.
    ended: StatusOutput | None = None


@dataclass(frozen=True)
class ExtractInput:
    extraction_id: str
    source_key: str
    target_key: str


@dataclass(frozen=True)
class ExtractOutput:
    clause_count: int
    model: str


@dataclass(frozen=True)
class CompleteInput:
    extraction_id: str
    clauses_key: str


@dataclass(frozen=True)
class CompleteOutput:
    clause_count: int
    result_key: str


@dataclass(frozen=True)
class DeletionInput:
    extraction_id: str
    # The second sweep of the id's objects comes this long after the purge (0 = none).
    settle_seconds: float = 0.0


@dataclass(frozen=True)
class PurgeInput:
    extraction_id: str


@dataclass(frozen=True)
class PurgeOutput:
    # The extraction's work has not stopped yet: try again later.
    pending: bool
    document_deleted: bool = False


@dataclass(frozen=True)
class RetentionInput:
    # Delete requests per activity call, and calls per scheduled run: a run's work is bounded.
    batch: int = 200
    max_batches: int = 10


@dataclass(frozen=True)
class ExpireInput:
    limit: int


@dataclass(frozen=True)
class ExpireOutput:
    marked: int


@dataclass(frozen=True)
class WebhookInput:
    extraction_id: str


@dataclass(frozen=True)
class WebhookOutput:
    """The delivery's outcome: contracts.v1.WebhookState, and the receiver's HTTP status (0: none)."""

    state: int
    status_code: int = 0
