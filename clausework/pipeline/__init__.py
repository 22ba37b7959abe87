"""The pipeline's contract between gateway, store and worker: states, limits and the task queue here;
Temporal payloads and object keys in `payloads`, search attributes in `search`."""

from __future__ import annotations

import uuid

from contracts.v1 import extraction_pb2 as pb

# States an extraction never leaves.
TERMINAL_STATES = (pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_CANCELLED)
# Checked by the gateway (the public answer) and again by the store (its columns' bounds).
MAX_REQUEST_ID_CHARS = 128
MAX_FILENAME_CHARS = 255
# The Temporal task queue the store's relay starts workflows on and the worker polls (TEMPORAL_TASK_QUEUE).
DEFAULT_TASK_QUEUE = "extractions"
# Where a streaming gateway writes an upload before CreateExtraction moves it into documents/; anything
# left there is swept by the store's janitor (and an S3 lifecycle rule, deploy/s3/lifecycle.json).
UPLOADS_PREFIX = "uploads/"


def new_upload_key() -> str:
    return f"{UPLOADS_PREFIX}{uuid.uuid4()}.pdf"


def is_upload_key(key: str) -> bool:
    return key.startswith(UPLOADS_PREFIX)
