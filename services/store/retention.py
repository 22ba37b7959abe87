"""How long an extraction is kept: the caller's wish, the deployment's default, the operator's maximum."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Retention:
    """`default`: for requests that name none (None = keep); `maximum`: caps every extraction, so a
    deployment with a maximum but no default keeps nothing longer than the maximum."""

    default: timedelta | None = None
    maximum: timedelta | None = None

    @classmethod
    def from_days(cls, default_days: float | None, maximum_days: float | None) -> Retention:
        return cls(
            timedelta(days=default_days) if default_days else None,
            timedelta(days=maximum_days) if maximum_days else None,
        )

    def effective(self, requested: timedelta | None) -> timedelta | None:
        """The retention an extraction gets; None: kept until deleted."""
        chosen = requested or self.default
        if self.maximum is None:
            return chosen
        return self.maximum if chosen is None else min(chosen, self.maximum)
