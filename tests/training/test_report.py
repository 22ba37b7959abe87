"""training.report's fold-by-fold table: each row scores exactly the contracts crossval puts in that fold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data import DEFAULT_CUAD as CUAD
from training.data import DEFAULT_SCORER as SCORER
from training.data import from_record
from training.groups import cv_folds
from training.report import main, read_jsonl

pytestmark = pytest.mark.skipif(not (CUAD / "labels.jsonl").exists(), reason="needs ../shared/cuad")


def test_by_fold_scores_each_fold_on_its_own_contracts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Predictions that copy the labels of fold 2's contracts only: fold 2 scores perfectly, the
    others find nothing, and against the same file as `--previous` every change is zero."""
    labels = read_jsonl(CUAD / "labels.jsonl")
    fold = cv_folds([from_record(r) for r in labels], 5)
    perfect = [
        {
            "id": r["id"],
            "clauses": [
                {"category": c, "text": t, "confidence": 1.0} for c, v in r["clauses"].items() for t in v["contexts"]
            ]
            if f == 2
            else [],
        }
        for r, f in zip(labels, fold, strict=True)
    ]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(p) + "\n" for p in perfect), encoding="utf-8")
    args = [str(predictions), str(predictions), "--previous", str(predictions), "--by-fold", "5"]
    assert main([*args, "--cuad-dir", str(CUAD), "--scorer", str(SCORER)]) == 0
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3, 4]
    assert [int(r[1]) for r in rows] == [fold.count(f) for f in range(5)]
    detection = {int(r[0]): float(r[2]) for r in rows}
    assert detection[2] == 1.0 and all(detection[f] == 0.0 for f in (0, 1, 3, 4))
    assert {r[i].strip() for r in rows for i in (4, 7, 10)} == {"+0.000"}
