"""The cost section's pure parts: object keys grouped by kind, Temporal Cloud actions counted from a
history by the documented rule, statements made table cells."""

from __future__ import annotations

import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
)

from bench.costs import _sql, billable_actions, key_pattern


def test_keys_are_grouped_by_kind() -> None:
    ident = str(uuid.uuid4())
    sha = "ab" + "c" * 62
    assert key_pattern(f"documents/0123456789abcdef/ab/{sha}.pdf") == "documents/*/*/*.pdf"
    assert key_pattern(f"extractions/{ident}/parsed.pb") == "extractions/*/parsed.pb"
    assert key_pattern(f"results/{ident}.json") == "results/*.json"
    assert key_pattern(f"uploads/{ident}.pdf") == "uploads/*.pdf"


def event(kind: int, **attributes: object) -> HistoryEvent:
    return HistoryEvent(event_type=kind, **attributes)  # type: ignore[arg-type]


def test_actions_follow_the_documented_rule() -> None:
    history = [
        event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),  # not an action
        event(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        event(
            EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
            activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(attempt=3),
        ),
        event(EventType.EVENT_TYPE_TIMER_STARTED),
        # Two local activities in one workflow task are one action, a third in another task one more.
        *(
            event(
                EventType.EVENT_TYPE_MARKER_RECORDED,
                marker_recorded_event_attributes=MarkerRecordedEventAttributes(workflow_task_completed_event_id=task),
            )
            for task in (7, 7, 9)
        ),
        event(EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),
    ]
    found = billable_actions(history)
    assert found == {
        "workflow started": 1,
        "activity scheduled": 1,
        "activity retried": 2,
        "timer started": 1,
        "local activities (per workflow task)": 2,
        "child workflow started": 2,
    }
    assert billable_actions(history[:1], scheduled=True) == {"workflow started": 1, "schedule start": 2}


def test_statements_become_one_bounded_table_cell() -> None:
    cell = _sql("SELECT a\n  FROM t WHERE x = 'a|b'")
    assert cell == "`SELECT a FROM t WHERE x = 'a\\|b'`"
    long = _sql("SELECT " + "x, " * 200 + "y FROM t WHERE id = $1")
    assert long.startswith("`SELECT x, ") and long.endswith("y FROM t WHERE id = $1`") and " … " in long
