"""deploy/s3/lifecycle.json, the bucket lifecycle operators apply (docs/deploy.md, "Object storage lifecycle").

Checked offline against botocore's own model of PutBucketLifecycleConfiguration (the request body
`aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration file://...` sends), then for what it
must do: expire everything under `uploads/` and abort incomplete multipart uploads there, each after a day.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import botocore.session
import botocore.validate
import pytest

LIFECYCLE = Path(__file__).resolve().parents[2] / "deploy" / "s3" / "lifecycle.json"
UPLOADS = "uploads/"
DAYS = 1


@functools.cache
def input_shape() -> Any:
    client = botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client.meta.service_model.operation_model("PutBucketLifecycleConfiguration").input_shape


def problems(configuration: Any) -> str:
    """botocore's validation report for a request with this LifecycleConfiguration; empty when valid."""
    params = {"Bucket": "b", "LifecycleConfiguration": configuration}
    report = botocore.validate.ParamValidator().validate(params, input_shape())
    return "" if not report.has_errors() else str(report.generate_report())


def configuration() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(LIFECYCLE.read_text())
    return loaded


def prefix(rule: dict[str, Any]) -> str | None:
    """The key prefix a rule applies to ("" = the whole bucket); None when it also filters on tags or sizes."""
    if "Filter" not in rule:
        return str(rule.get("Prefix", ""))  # the deprecated top-level form
    selected = rule["Filter"]
    if set(selected) <= {"Prefix"}:
        return str(selected.get("Prefix", ""))
    if set(selected) == {"And"} and set(selected["And"]) == {"Prefix"}:
        return str(selected["And"]["Prefix"])
    return None


def covering(key: str) -> list[dict[str, Any]]:
    """The enabled rules that apply to every object named `key`."""
    found = []
    for rule in configuration()["Rules"]:
        applies = prefix(rule)
        if rule["Status"] == "Enabled" and applies is not None and key.startswith(applies):
            found.append(rule)
    return found


def test_lifecycle_matches_botocores_request_model() -> None:
    assert problems(configuration()) == ""
    ids = [rule.get("ID") for rule in configuration()["Rules"]]
    assert len(ids) == len(set(ids)) and all(ids), f"rule IDs must be present and unique: {ids}"


def test_validation_catches_mistakes() -> None:
    """The model is strict (so a pass means something): a misspelt field, a wrong type, a missing Status."""
    misspelt = copy.deepcopy(configuration())
    misspelt["Rules"][0]["Expiry"] = misspelt["Rules"][0].pop("Expiration")
    assert "Expiry" in problems(misspelt)
    mistyped = copy.deepcopy(configuration())
    mistyped["Rules"][0]["Expiration"]["Days"] = "1"
    assert problems(mistyped)
    unstated = copy.deepcopy(configuration())
    del unstated["Rules"][0]["Status"]
    assert "Status" in problems(unstated)


@pytest.mark.parametrize("key", [f"{UPLOADS}0b9c7d6e.pdf", f"{UPLOADS}nested/part"])
def test_uploads_expire_after_a_day(key: str) -> None:
    days = [rule["Expiration"]["Days"] for rule in covering(key) if "Days" in rule.get("Expiration", {})]
    assert days and min(days) == DAYS, f"{key}: expiring rules {days}"


@pytest.mark.parametrize("key", [f"{UPLOADS}0b9c7d6e.pdf"])
def test_incomplete_multipart_uploads_are_aborted_after_a_day(key: str) -> None:
    days = [
        rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        for rule in covering(key)
        if "AbortIncompleteMultipartUpload" in rule
    ]
    assert days and min(days) == DAYS, f"{key}: abort rules {days}"


@pytest.mark.parametrize("key", ["documents/0b9c7d6e.pdf", "extractions/x", "results/x"])
def test_nothing_outside_uploads_expires(key: str) -> None:
    """Documents and results are kept: only the abort of unfinished multipart uploads applies to them."""
    expiring = [rule["ID"] for rule in covering(key) if "Expiration" in rule or "NoncurrentVersionExpiration" in rule]
    assert not expiring, f"{key} would be deleted by {expiring}"
