"""The retention an extraction gets from its request, the deployment's default and the operator's cap."""

from __future__ import annotations

from datetime import timedelta

from services.store.retention import Retention

DAY = timedelta(days=1)


def test_unset_keeps_and_the_default_applies_to_requests_without_one() -> None:
    assert Retention().effective(None) is None
    assert Retention().effective(7 * DAY) == 7 * DAY
    assert Retention.from_days(30, None).effective(None) == 30 * DAY
    assert Retention.from_days(30, None).effective(timedelta(seconds=5)) == timedelta(seconds=5)


def test_the_maximum_caps_everything_including_keep_forever() -> None:
    capped = Retention.from_days(None, 90)
    assert capped.effective(None) == 90 * DAY
    assert capped.effective(365 * DAY) == 90 * DAY
    assert capped.effective(DAY) == DAY
    assert Retention.from_days(120, 90).effective(None) == 90 * DAY
