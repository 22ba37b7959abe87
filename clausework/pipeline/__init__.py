"""The pipeline's contract between gateway, store and worker: states, limits and the task queue here;
Temporal payloads and object keys in `payloads`, search attributes in `search`."""

from __future__ import annotations

from contracts.v1 import extraction_pb2 as pb

# States an extraction never leaves.
TERMINAL_STATES = (pb.STATE_SUCCEEDED, pb.STATE_FAILED, pb.STATE_CANCELLED)
# Checked by the gateway (the public answer) and again by the store (its columns' bounds).
MAX_REQUEST_ID_CHARS = 128
MAX_FILENAME_CHARS = 255
# The Temporal task queue the store's relay starts workflows on and the worker polls (TEMPORAL_TASK_QUEUE).
DEFAULT_TASK_QUEUE = "extractions"
